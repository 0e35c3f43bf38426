"""Shared helpers for the model-level Python tests: Ultralytics' letterbox with OpenCV, paths, runs."""
import argparse
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True, help="CMake build directory with kestrel binaries")
    p.add_argument("--shared", required=True, help="path of ../shared")
    return p.parse_args()


def letterbox(path, size=640):
    """Ultralytics LetterBox(auto=False): ratio fit, INTER_LINEAR, pad 114 as round(d -/+ 0.1), RGB /255, NCHW."""
    im = cv2.imread(path)
    h, w = im.shape[:2]
    r = min(size / h, size / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (size - nw) / 2, (size - nh) / 2
    if (w, h) != (nw, nh):
        im = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return (im[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0).copy()


def rel_l2(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


class Checker:
    """Counts checks; prints one line per failure; exits non-zero at the end if any failed."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}")

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def run(cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


class Cli:
    """The kestrel binary of a build, run in a private working folder, and checks of its errors."""

    def __init__(self, args, checker, prefix):
        self.kestrel = os.path.abspath(os.path.join(args.build, "kestrel"))
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.c = checker

    def __call__(self, *argv):
        return run([self.kestrel, *argv], cwd=self.work)

    def one_line_error(self, r, what, needle=None, after_warnings=False):
        """A non-zero exit with exactly one `Error:` line on stderr (after_warnings: the last of several)."""
        lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
        if after_warnings:
            ok = r.returncode != 0 and lines and lines[-1].startswith("Error:") and (needle is None or needle in lines[-1])
            self.c.check(ok, f"{what}: exit {r.returncode}, error {lines[-1:] if lines else lines}")
            return
        ok = r.returncode != 0 and len(lines) == 1 and lines[0].startswith("Error:") and (needle is None or needle in lines[0])
        self.c.check(ok, f"{what}: exit {r.returncode}, one-line error {lines[:2]}")
