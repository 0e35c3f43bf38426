"""CUDA engines vs the CPU FP32 engine on real images (needs a GPU; ctest label "gpu").

For every model present in <shared>/models: a CUDA FP32 engine (relative L2 <= 1e-3) and a CUDA
FP16 engine (<= 1e-2), built with dynamic batch up to 8, on a batch of real letterboxed images; an
image run alone gives its result in the batch (to a tenth of those tolerances: batch 1 uses the conv
tactics tuned for small batches). Bad input: int8 on CUDA is refused with a
one-line error.
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

r = k("export", f"model={os.path.join(tmp, 'yolov8n.onnx')}", "format=engine", "device=0", "int8=True")
k.one_line_error(r, "int8 on CUDA", "no CUDA INT8 kernels", after_warnings=True)
c.finish()
