"""FP32 batch-1 latency of a Kestrel engine and of ONNX Runtime on the same model, in one run.

Alternates the two (kestrel benchmark prints median over 30 timed runs after 5 warm-up runs; ONNX
Runtime is timed the same way here) for --rounds rounds and reports the median of the medians and
the ratio. Usage: python bench/models/cpu_vs_onnxruntime.py --build build --model ../shared/models/yolov8n.onnx
"""
import argparse
import os
import platform
import re
import statistics
import shutil
import subprocess
import tempfile
import time

import numpy as np
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("--build", default="build")
p.add_argument("--model", required=True)
p.add_argument("--rounds", type=int, default=5)
a = p.parse_args()

# Export from a private copy: the engine is written beside the model, and ../shared is read-only.
work = tempfile.mkdtemp(prefix="kestrel_bench_")
model_copy = shutil.copy(a.model, work)
subprocess.run([os.path.join(a.build, "kestrel"), "export", f"model={model_copy}"], check=True, capture_output=True)
engine = model_copy.replace(".onnx", ".engine")

sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
name = sess.get_inputs()[0].name


def ort_median():
    for _ in range(5):
        sess.run(None, {name: x})
    ts = []
    for _ in range(30):
        t = time.perf_counter()
        sess.run(None, {name: x})
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def kestrel_median():
    out = subprocess.run([os.path.join(a.build, "kestrel"), "benchmark", f"model={engine}"], check=True,
                         capture_output=True, text=True).stdout
    row = [l for l in out.splitlines() if re.match(r"\s+1\s", l)][0]
    return float(row.split()[1])


k, o = [], []
for r in range(a.rounds):
    k.append(kestrel_median())
    o.append(ort_median())
    print(f"round {r + 1}: kestrel {k[-1]:.2f} ms, onnxruntime {o[-1]:.2f} ms")
km, om = statistics.median(k), statistics.median(o)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print(f"\n{os.path.basename(a.model)} FP32 batch 1 on {cpu} ({os.cpu_count()} cores), onnxruntime {ort.__version__}")
print(f"kestrel {km:.2f} ms | onnxruntime {om:.2f} ms | ratio kestrel/onnxruntime {km / om:.3f}")
