"""The kestrel CLI end to end: export and predict as a user runs them (Ultralytics' output layout),
and every kind of bad input giving a one-line error, a non-zero exit and nothing half-written."""
import json
import os
import shutil
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common import Checker, Cli, parse_args, run

args = parse_args()
c = Checker()
shared = os.path.abspath(args.shared)
k = Cli(args, c, "kestrel_cli_")
work = k.work
bus = os.path.join(shared, "images", "bus.jpg")


# Export and predict.
shutil.copy(os.path.join(shared, "models", "yolov8n.onnx"), work)
r = k("export", "model=yolov8n.onnx", "format=engine", "device=cpu")
c.check(r.returncode == 0 and os.path.isfile(os.path.join(work, "yolov8n.engine")), "export writes yolov8n.engine beside the model")
r = k("predict", "model=yolov8n.engine", f"source={bus}")
c.check(r.returncode == 0 and os.path.isfile(os.path.join(work, "runs/detect/predict/bus.jpg")), "predict saves runs/detect/predict/bus.jpg")
c.check("4 persons, 1 bus" in r.stdout and "Speed:" in r.stdout, "predict prints the per-image line and the Speed summary")
r = k("predict", "model=yolov8n.engine", f"source={bus}", "save_txt=True")
c.check(os.path.isfile(os.path.join(work, "runs/detect/predict2/labels/bus.txt")), "a second run goes to predict2 with labels/")
r = k("predict", "model=yolov8n.engine", f"source={bus}", "name=predict", "exist_ok=True", "classes=5", "save_txt=True")
lines = open(os.path.join(work, "runs/detect/predict/labels/bus.txt")).read().split("\n")
c.check(r.returncode == 0 and lines[0].startswith("5 ") and lines[1] == "", "classes=5 keeps only the bus; exist_ok reuses the folder")

# Pose on a folder with a broken image: skipped with a warning.
imgs = os.path.join(work, "imgs")
os.makedirs(imgs)
shutil.copy(bus, imgs)
shutil.copy(os.path.join(shared, "images", "zidane.jpg"), imgs)
open(os.path.join(imgs, "broken.jpg"), "wb").write(b"not a jpeg")
pose = os.path.join(shared, "models", "yolov8n-pose.onnx")
r = k("predict", f"model={pose}", f"source={imgs}", "conf=0.25", "iou=0.7", "max_det=300", "classes=0", "save_txt=True",
      "save_conf=True", "save_json=True")
d = os.path.join(work, "runs/pose/predict")
c.check(r.returncode == 0 and "broken.jpg" in r.stderr and "WARNING" in r.stderr, "a bad image in a folder is skipped with a warning")
txt = open(os.path.join(d, "labels/bus.txt")).read().split("\n")[0].split()
c.check(len(txt) == 1 + 4 + 17 * 3 + 1, f"pose label line has class, box, 17x3 keypoints, conf ({len(txt)} fields)")
recs = json.load(open(os.path.join(d, "predictions.json")))
c.check(len(recs) >= 4 and len(recs[0]["keypoints"]) == 51 and {"image_id", "bbox", "score", "category_id"} <= recs[0].keys(),
        "save_json writes COCO-style records with keypoints")
c.check(os.path.isfile(os.path.join(d, "bus.jpg")) and os.path.isfile(os.path.join(d, "zidane.jpg")), "annotated pose images saved")

# Bad input.
k.one_line_error(k("predict", "model=missing.engine", f"source={bus}"), "missing model", "not found")
open(os.path.join(work, "text.onnx"), "w").write("hello, not a model\n")
k.one_line_error(k("export", "model=text.onnx"), "non-ONNX file", "not a valid ONNX model")
data = open(os.path.join(work, "yolov8n.onnx"), "rb").read()
open(os.path.join(work, "trunc.onnx"), "wb").write(data[: len(data) // 2])
k.one_line_error(k("export", "model=trunc.onnx"), "truncated ONNX")
c.check(not os.path.exists(os.path.join(work, "trunc.engine")) and not os.path.exists(os.path.join(work, "trunc.engine.tmp")),
        "a failed export leaves no engine or temporary file")

x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])
y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 8, 8])
g = helper.make_graph([helper.make_node("HardSwish", ["images"], ["out"], name="act0")], "g", [x], [y])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), os.path.join(work, "unsupported.onnx"))
k.one_line_error(k("export", "model=unsupported.onnx"), "unsupported op", "'HardSwish'")

engine = open(os.path.join(work, "yolov8n.engine"), "rb").read()
flipped = bytearray(engine)
flipped[len(flipped) // 3] ^= 0x01
open(os.path.join(work, "flipped.engine"), "wb").write(bytes(flipped))
k.one_line_error(k("predict", "model=flipped.engine", f"source={bus}"), "engine with a flipped byte", "corrupt")
# CUDA engines on a machine without a GPU (CI's): export and load both say so in one line.
if shutil.which("nvidia-smi") is None:
    k.one_line_error(k("export", "model=yolov8n.onnx", "device=0", "half=True"), "export device=0 without a GPU",
                     "no CUDA GPU")
    _, _, _, j_size, b_size = struct.unpack_from("<8sIIQQ", engine, 0)
    desc = json.loads(engine[32:32 + j_size])
    desc["target"] = "cuda:sm_90"
    body = bytearray(engine[:32 + j_size + b_size])
    new_json = json.dumps(desc).encode()
    body = bytearray(struct.pack("<8sIIQQ", engine[:8], *struct.unpack_from("<II", engine, 8), len(new_json), b_size)
                     ) + new_json + body[32 + j_size:]
    h = 0xCBF29CE484222325
    for byte in bytes(body):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    open(os.path.join(work, "cuda.engine"), "wb").write(bytes(body) + struct.pack("<Q", h))
    k.one_line_error(k("predict", "model=cuda.engine", f"source={bus}"), "CUDA engine without a GPU", "no CUDA GPU")
    k.one_line_error(k("benchmark", "model=cuda.engine", f"source={bus}"), "GPU end-to-end benchmark without a GPU",
                     "no CUDA GPU")
open(os.path.join(work, "short.engine"), "wb").write(engine[:-100])
k.one_line_error(k("predict", "model=short.engine", f"source={bus}"), "engine with missing bytes", "truncated")

open(os.path.join(work, "empty.jpg"), "wb").write(b"")
k.one_line_error(k("predict", "model=yolov8n.engine", "source=empty.jpg"), "zero-byte image")
open(os.path.join(work, "notes.jpg"), "w").write("some text")
k.one_line_error(k("predict", "model=yolov8n.engine", "source=notes.jpg"), "non-image file")
k.one_line_error(k("predict", "model=yolov8n.engine", f"source={bus}", "colour=red"), "unknown key", "Valid arguments")
k.one_line_error(k("predict", "model=yolov8n.engine", f"source={bus}", "imgsz=abc"), "imgsz=abc", "imgsz=abc")
k.one_line_error(k("predict", "model=yolov8n.engine", f"source={bus}", "conf=2"), "conf=2", "conf=2")

# An export that fails must not touch an engine the user already has.
shutil.copy(os.path.join(work, "trunc.onnx"), os.path.join(work, "keep.onnx"))
open(os.path.join(work, "keep.engine"), "wb").write(engine)
k("export", "model=keep.onnx")
c.check(open(os.path.join(work, "keep.engine"), "rb").read() == engine, "a failed export leaves the existing engine intact")
c.finish()
