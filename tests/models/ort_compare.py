"""Raw outputs of Kestrel FP32 engines vs ONNX Runtime on real images (relative L2 <= 1e-4), and a
dynamic-batch copy of yolov8n.onnx (made here, with the Shape/Gather/Unsqueeze/Concat reshape
subgraphs of Ultralytics' dynamic exports) at batch 1..8: each image's output equals its batch-1 output."""
import glob
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from common import Checker, letterbox, parse_args, rel_l2, run

args = parse_args()
c = Checker()
tmp = tempfile.mkdtemp(prefix="kestrel_ort_")
run_raw = os.path.join(args.build, "kestrel_run_raw")
images = [os.path.join(args.shared, "images", n) for n in ("bus.jpg", "zidane.jpg")]
images += sorted(glob.glob(os.path.join(args.shared, "datasets/coco128/images/train2017/*.jpg")))[:6]


def kestrel_outputs(model, x, batch, n_out):
    inp = os.path.join(tmp, "in.bin")
    x.astype(np.float32).tofile(inp)
    r = run([run_raw, model, inp, str(batch), os.path.join(tmp, "out")])
    assert r.returncode == 0, r.stderr
    return [np.fromfile(os.path.join(tmp, f"out{k}.bin"), np.float32) for k in range(n_out)]


for name in ("yolov8n.onnx", "yolov8n-pose.onnx"):
    model = os.path.join(args.shared, "models", name)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    for img in images[:4]:
        x = letterbox(img)
        ref = sess.run(None, {"images": x})
        got = kestrel_outputs(model, x, 1, len(ref))
        for k, r in enumerate(ref):
            err = rel_l2(got[k], r.ravel())
            c.check(err <= 1e-4, f"{name} {os.path.basename(img)} output{k}: relative L2 {err:.2e} <= 1e-4")

# Segment (both exports, ConvTranspose prototypes) and classify: every raw output on a real image.
for name, size in (("yolov8n-seg.onnx", 640), ("yolov8n-seg-320.onnx", 320), ("yolov8n-cls.onnx", 224)):
    model = os.path.join(args.shared, "models", name)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = letterbox(images[0], size)
    ref = sess.run(None, {"images": x})
    got = kestrel_outputs(model, x, 1, len(ref))
    for k, r in enumerate(ref):
        err = rel_l2(got[k], r.ravel())
        c.check(err <= 1e-4, f"{name} bus.jpg output{k}: relative L2 {err:.2e} <= 1e-4")


def make_dynamic(src, dst):
    """Batch axis symbolic; every Reshape whose shape starts with the batch 1 takes it from Shape(images)."""
    m = onnx.load(src)
    g = m.graph
    g.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    for o in g.output:
        o.type.tensor_type.shape.dim[0].dim_param = "batch"
    inits = {i.name: i for i in g.initializer}
    nodes = []
    g.node.extend([
        helper.make_node("Shape", ["images"], ["dyn_shape"], name="dyn_shape"),
        helper.make_node("Gather", ["dyn_shape", "dyn_zero"], ["dyn_batch0"], name="dyn_gather", axis=0),
        helper.make_node("Unsqueeze", ["dyn_batch0", "dyn_axes"], ["dyn_batch"], name="dyn_unsqueeze"),
    ])
    g.initializer.extend([numpy_helper.from_array(np.array(0, np.int64), "dyn_zero"),
                          numpy_helper.from_array(np.array([0], np.int64), "dyn_axes")])
    head = list(g.node)[-3:]
    for n in list(g.node)[:-3]:
        if n.op_type == "Reshape" and n.input[1] in inits:
            shape = numpy_helper.to_array(inits[n.input[1]])
            if shape[0] == 1:
                rest = n.name + "_rest"
                g.initializer.append(numpy_helper.from_array(shape[1:].astype(np.int64), rest))
                cat = n.name + "_dyn_shape"
                nodes.append(helper.make_node("Concat", ["dyn_batch", rest], [cat], name=cat, axis=0))
                n.input[1] = cat
        nodes.append(n)
    del g.node[:]
    g.node.extend(head + nodes)
    m.metadata_props.append(onnx.StringStringEntryProto(key="dynamic", value="True"))
    onnx.save(m, dst)


dyn = os.path.join(tmp, "yolov8n-dynamic.onnx")
make_dynamic(os.path.join(args.shared, "models", "yolov8n.onnx"), dyn)
xs = np.concatenate([letterbox(i) for i in images[:8]])
singles = [kestrel_outputs(dyn, xs[i:i + 1], 1, 1)[0] for i in range(8)]
per = singles[0].size
for b in range(1, 9):
    out = kestrel_outputs(dyn, xs[:b], b, 1)[0]
    same = all(np.array_equal(out[i * per:(i + 1) * per], singles[i]) for i in range(b))
    c.check(same, f"dynamic yolov8n batch {b}: every image's output equals its batch-1 output")
ref8 = ort.InferenceSession(dyn, providers=["CPUExecutionProvider"]).run(None, {"images": xs})[0]
err = rel_l2(kestrel_outputs(dyn, xs, 8, 1)[0], ref8.ravel())
c.check(err <= 1e-4, f"dynamic yolov8n batch 8 vs ONNX Runtime: relative L2 {err:.2e} <= 1e-4")
c.finish()
