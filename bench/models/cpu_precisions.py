"""CPU batch-1 latency of Kestrel FP32, FP16 and INT8 engines beside ONNX Runtime FP32, in one run.

The engines are given (already exported); rounds alternate over all four, each a median of 30
timed runs after 5 warm-up runs. Usage:
  python bench/models/cpu_precisions.py --build build --onnx ../shared/models/yolov8n.onnx \
      --engine fp32=a.engine --engine fp16=b.engine --engine int8=c.engine --rounds 5
"""
import argparse
import os
import re
import statistics
import subprocess
import time

import numpy as np
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("--build", default="build")
p.add_argument("--onnx", required=True)
p.add_argument("--engine", action="append", default=[], help="label=path")
p.add_argument("--rounds", type=int, default=5)
a = p.parse_args()
engines = [e.split("=", 1) for e in a.engine]

sess = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)


def ort_median():
    for _ in range(5):
        sess.run(None, {"images": x})
    ts = []
    for _ in range(30):
        t = time.perf_counter()
        sess.run(None, {"images": x})
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def kestrel_median(path):
    out = subprocess.run([os.path.join(a.build, "kestrel"), "benchmark", f"model={path}", "batch=1"], check=True,
                         capture_output=True, text=True).stdout
    return float([l for l in out.splitlines() if re.match(r"\s+1\s", l)][0].split()[1])


res = {label: [] for label, _ in engines}
res["onnxruntime"] = []
for r in range(a.rounds):
    for label, path in engines:
        res[label].append(kestrel_median(path))
    res["onnxruntime"].append(ort_median())
    print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in res.items()))
o = statistics.median(res["onnxruntime"])
print(f"\nonnxruntime {ort.__version__}, {os.cpu_count()} cores")
for k, v in res.items():
    m = statistics.median(v)
    print(f"{k:12s} {m:8.2f} ms  ratio to onnxruntime {m / o:.3f}")
