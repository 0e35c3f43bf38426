#!/usr/bin/env python3
"""Writes tests/data/letterbox/golden.txt: OpenCV's decode, resize and letterbox results as checksums.

The C++ resize and letterbox (src/yolo/preprocess/letterbox.cc) must be bit-exact with OpenCV, and the
JPEG decoder (src/yolo/image/image.cc) with cv2.imread; tests/yolo/letterbox_test.cc and image_test.cc
compare against this file. Each case stores the FNV-1a-64 of the full result bytes and a few sampled
bytes, so a mismatch can say how much differs without the golden data holding whole images.

Usage (any Python with opencv-python(-headless) and numpy):
    python scripts/gen_letterbox_golden.py [--shared ../shared] [--out tests/data/letterbox]
"""

import argparse
import math
import pathlib
import platform

import cv2
import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
SAMPLES_PER_CASE = 24
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def random_image(width: int, height: int, seed: int) -> np.ndarray:
    """RGB noise from xorshift32 (top byte of each state); tests/yolo/golden_data.h generates the same."""
    state = seed
    out = bytearray(width * height * 3)
    for i in range(len(out)):
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        out[i] = state >> 24
    return np.frombuffer(bytes(out), np.uint8).reshape(height, width, 3)


def imread_rgb(path: pathlib.Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def letterbox(im: np.ndarray, new_shape: int):
    """ultralytics.data.augment.LetterBox(new_shape, auto=False, scaleup=True, center=True) on one image."""
    shape = im.shape[:2]
    r = min(new_shape / shape[0], new_shape / shape[1])
    new_unpad = int(round(shape[1] * r)), int(round(shape[0] * r))
    dw, dh = new_shape - new_unpad[0], new_shape - new_unpad[1]
    dw /= 2
    dh /= 2
    if shape[::-1] != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return im, left, top, new_unpad


def long_side_size(im: np.ndarray, imgsz: int):
    """The size ultralytics BaseDataset.load_image (rect mode) shrinks an image to."""
    h0, w0 = im.shape[:2]
    r = imgsz / max(h0, w0)
    return min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz)


class Writer:
    def __init__(self):
        self.lines = []
        self.rng = np.random.default_rng(20240601)

    def add(self, name: str, source: str, op: str, result: np.ndarray, **extra):
        data = np.ascontiguousarray(result).tobytes()
        offsets = sorted(self.rng.choice(len(data), size=min(SAMPLES_PER_CASE, len(data)), replace=False))
        fields = [f"name={name}", f"source={source}", f"op={op}"]
        fields += [f"{k}={v}" for k, v in extra.items()]
        fields.append(f"fnv={fnv1a64(data):016x}")
        fields.append("samples=" + ",".join(f"{o}:{data[o]}" for o in offsets))
        self.lines.append(" ".join(fields))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=pathlib.Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "tests" / "data" / "letterbox")
    args = parser.parse_args()
    w = Writer()

    images = {}
    for file in ("bus.jpg", "zidane.jpg"):
        im = imread_rgb(args.shared / "images" / file)
        images[file] = im
        w.add(f"decode_{file.split('.')[0]}", f"file:{file}", "decode", im, size=f"{im.shape[1]}x{im.shape[0]}")

    for file, im in images.items():
        stem = file.split(".")[0]
        for imgsz in (640, 320):
            out, left, top, (nw, nh) = letterbox(im, imgsz)
            w.add(f"letterbox_{stem}_{imgsz}", f"file:{file}", "letterbox", out, size=f"{imgsz}x{imgsz}",
                  resized=f"{nw}x{nh}", pad=f"{left}x{top}")
            aw, ah = long_side_size(im, imgsz)
            w.add(f"area_{stem}_{imgsz}", f"file:{file}", "area", cv2.resize(im, (aw, ah), interpolation=cv2.INTER_AREA),
                  size=f"{aw}x{ah}")

    # The network input as Ultralytics builds it: HWC -> CHW, float32, divided by 255.
    out, *_ = letterbox(images["bus.jpg"], 640)
    tensor = np.ascontiguousarray(out.transpose(2, 0, 1)).astype(np.float32)
    tensor /= 255
    w.add("tensor_bus_640", "file:bus.jpg", "tensor", tensor, size="640x640")

    # Noise makes every rounding step visible. Sizes cover odd sizes, up/down/mixed scaling, integer
    # factors (2x2 takes OpenCV's INTER_AREA shortcut even for INTER_LINEAR), and 1-pixel edges.
    linear_cases = [((37, 53), (64, 64)), ((100, 80), (640, 512)), ((1000, 700), (333, 233)), ((200, 120), (100, 60)),
                    ((300, 200), (100, 50)), ((1, 5), (3, 7)), ((5, 1), (2, 4)), ((50, 300), (120, 77)),
                    ((641, 479), (640, 480)), ((64, 64), (37, 53))]
    area_cases = [((200, 120), (100, 60)), ((300, 200), (100, 50)), ((123, 77), (50, 31)), ((20, 30), (45, 50)),
                  ((100, 20), (40, 35)), ((90, 60), (90, 30)), ((1000, 700), (333, 233)), ((641, 479), (640, 480))]
    for seed, (op, cases) in enumerate((("linear", linear_cases), ("area", area_cases)), start=1):
        interpolation = cv2.INTER_LINEAR if op == "linear" else cv2.INTER_AREA
        for i, ((sw, sh), (dw, dh)) in enumerate(cases):
            source = f"random:{sw}x{sh}:{seed * 1000 + i + 1}"
            im = random_image(sw, sh, seed * 1000 + i + 1)
            w.add(f"{op}_{sw}x{sh}_to_{dw}x{dh}", source, op, cv2.resize(im, (dw, dh), interpolation=interpolation),
                  size=f"{dw}x{dh}")
    for i, imgsz in enumerate((640, 64)):
        source = f"random:100x80:{3000 + i + 1}"
        out, left, top, (nw, nh) = letterbox(random_image(100, 80, 3000 + i + 1), imgsz)
        w.add(f"letterbox_100x80_{imgsz}", source, "letterbox", out, size=f"{imgsz}x{imgsz}", resized=f"{nw}x{nh}",
              pad=f"{left}x{top}")

    args.out.mkdir(parents=True, exist_ok=True)
    header = [
        "# Generated, do not edit; generator: scripts/gen_letterbox_golden.py (see MANIFEST.md).",
        f"# OpenCV {cv2.__version__}, numpy {np.__version__}, Python {platform.python_version()}.",
        "# One case a line: key=value fields; fnv = FNV-1a-64 of the result bytes (RGB, row-major; 'tensor':",
        "# float32 NCHW little-endian); samples = byte offset:value pairs of the same bytes.",
    ]
    (args.out / "golden.txt").write_text("\n".join(header + w.lines) + "\n")
    print(f"wrote {len(w.lines)} cases to {args.out / 'golden.txt'} with OpenCV {cv2.__version__}")


if __name__ == "__main__":
    main()
