"""CUDA engines vs the CPU FP32 engine on real images (needs a GPU; ctest label "gpu").

For every model present in <shared>/models: a CUDA FP32 engine (relative L2 <= 1e-3) and a CUDA
FP16 engine (<= 1e-2), built with dynamic batch up to 8, on a batch of real letterboxed images; an
image run alone gives its result in the batch (to a tenth of those tolerances: batch 1 uses the conv
tactics tuned for small batches). INT8 (yolov8n, calibrated on coco128): the CUDA engine is as
close to CPU FP32 as the CPU INT8 engine with the same calibration cache.
"""
import os
import tempfile

import numpy as np

from common import Checker, Cli, letterbox, parse_args, rel_l2, run

args = parse_args()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kestrel_gpu_")
run_raw = os.path.join(args.build, "kestrel_run_raw")
k = Cli(args, c, "gpu")
images = [os.path.join(args.shared, "images", n) for n in ("bus.jpg", "zidane.jpg")]


def outputs(model, x, batch, n_out, tag):
    inp = os.path.join(tmp, f"{tag}_in.bin")
    x.astype(np.float32).tofile(inp)
    r = run([run_raw, model, inp, str(batch), os.path.join(tmp, f"{tag}_out")])
    assert r.returncode == 0, r.stderr
    return [np.fromfile(os.path.join(tmp, f"{tag}_out{i}.bin"), np.float32) for i in range(n_out)]


MODELS = {"yolov8n.onnx": (640, 1), "yolov8n-pose.onnx": (640, 1), "yolov8n-seg-320.onnx": (320, 2),
          "yolov8n-seg.onnx": (640, 2), "yolov8n-cls.onnx": (224, 1)}
for name, (size, n_out) in MODELS.items():
    src = os.path.join(args.shared, "models", name)
    if not os.path.exists(src):
        continue
    model = os.path.join(tmp, name)
    os.symlink(src, model)
    x = np.concatenate([letterbox(im, size) for im in images] * 2)  # batch 4
    ref = outputs(model, x, 4, n_out, "cpu")
    for precision, tol in (("fp32", 1e-3), ("fp16", 1e-2)):
        engine = os.path.join(tmp, f"{name[:-5]}_{precision}.engine")
        extra = ["half=True"] if precision == "fp16" else []
        r = k("export", f"model={model}", "format=engine", "device=0", "dynamic=True", "batch=8", *extra)
        c.check(r.returncode == 0, f"{name} {precision}: export device=0 ({r.stderr.strip()[-200:]})")
        if r.returncode != 0:
            continue
        os.replace(model[:-5] + ".engine", engine)
        got = outputs(engine, x, 4, n_out, precision)
        for i in range(n_out):
            err = rel_l2(got[i], ref[i])
            c.check(err <= tol, f"{name} {precision} output{i}: relative L2 to CPU FP32 {err:.2e} <= {tol}")
        # Batch 1 runs the conv tactics tuned for small batches (other tiles, split-K): the same
        # result up to summation order.
        one = outputs(engine, x[:1], 1, n_out, precision + "1")
        for i in range(n_out):
            per_image = got[i].size // 4
            err = rel_l2(one[i], got[i][:per_image])
            c.check(err <= tol / 10, f"{name} {precision} output{i}: image 0 alone vs in the batch {err:.2e} <= {tol / 10}")

# INT8 (yolov8n, calibrated on coco128): the CUDA engine (8-bit weights, f16 elsewhere) must be as
# close to CPU FP32 as the CPU INT8 engine (7-bit weights) with the same calibration cache is.
model = os.path.join(tmp, "yolov8n.onnx")
data = os.path.join(args.shared, "datasets", "coco128", "coco128.yaml")
if os.path.exists(model) and os.path.exists(data):
    x = np.concatenate([letterbox(im, 640) for im in images] * 2)
    ref = outputs(model, x, 4, 1, "cpu32")
    errs = {}
    for device in ("cpu", "0"):
        r = k("export", f"model={model}", "format=engine", f"device={device}", "int8=True", f"data={data}", "batch=4")
        c.check(r.returncode == 0, f"int8 device={device}: export ({r.stderr.strip()[-300:]})")
        if r.returncode != 0:
            continue
        engine = os.path.join(tmp, f"yolov8n_int8_{device}.engine")
        os.replace(model[:-5] + ".engine", engine)
        got = outputs(engine, x, 4, 1, "int8" + device)
        errs[device] = rel_l2(got[0], ref[0])
        if device == "0":
            one = outputs(engine, x[:1], 1, 1, "int8_1")
            err = rel_l2(one[0], got[0][: got[0].size // 4])
            c.check(err <= 1e-3, f"int8 CUDA: image 0 alone vs in the batch {err:.2e} <= 1e-3")
    if len(errs) == 2:
        print(f"int8 output0 relative L2 to CPU FP32: CPU {errs['cpu']:.3e}, CUDA {errs['0']:.3e}")
        c.check(0 < errs["0"] <= 1.25 * errs["cpu"] + 1e-3,
                f"int8 CUDA {errs['0']:.3e} <= 1.25 x CPU INT8 {errs['cpu']:.3e} (relative L2 to CPU FP32)")
c.finish()
