"""`kestrel val` end to end: yolov8n on COCO128 scored as Ultralytics' `yolo val` scores it (its output layout,
metrics within reach of the reference numbers in ../shared/README.md), a small dataset with a broken image and a
corrupt label file, and bad input giving a one-line error and a non-zero exit."""
import glob
import json
import math
import os
import shutil
import subprocess

import cv2
import numpy as np

from common import Checker, Cli, parse_args, run

args = parse_args()
c = Checker()
shared = os.path.abspath(args.shared)
k = Cli(args, c, "kestrel_val_")
work = k.work
coco128 = os.path.join(shared, "datasets", "coco128")


def numpy_metrics(predictions, dataset):
    """P, R, mAP50, mAP50-95 from predictions.json and the labels by a NumPy transcription of Ultralytics'
    DetectionValidator (match_predictions, ap_per_class, compute_ap, smooth), independent of the C++ code."""
    byimg = {}
    for p in predictions:
        byimg.setdefault(p["image_id"], []).append(p)
    iouv = np.linspace(0.5, 0.95, 10).astype(np.float32)
    tps, confs, pcls, tcls = [], [], [], []
    for f in sorted(glob.glob(os.path.join(dataset, "images", "train2017", "*.jpg"))):
        h0, w0 = cv2.imread(f).shape[:2]
        r = 640 / max(h0, w0)
        w1, h1 = (min(math.ceil(w0 * r), 640), min(math.ceil(h0 * r), 640)) if r != 1 else (w0, h0)
        lf = f.replace("/images/", "/labels/").rsplit(".", 1)[0] + ".txt"
        lb = np.loadtxt(lf, ndmin=2, dtype=np.float32) if os.path.isfile(lf) else np.zeros((0, 5), np.float32)
        lb = np.unique(lb, axis=0) if len(np.unique(lb, axis=0)) < len(lb) else lb
        xy, wh = lb[:, 1:3], lb[:, 3:5]
        gt = np.concatenate([xy - wh / 2, xy + wh / 2], 1) * np.array([w1, h1, w1, h1], np.float32) / np.float32(h1 / h0)
        gt = gt.clip(0, np.array([w0, h0, w0, h0], np.float32))
        ps = byimg.get(int(os.path.basename(f)[:-4]), [])
        pb = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (p["bbox"] for p in ps)], np.float32).reshape(-1, 4)
        pc = np.array([p["category_id"] for p in ps], np.float32)
        tp = np.zeros((len(ps), 10), bool)
        if len(ps) and len(lb):
            a1, a2, b1, b2 = gt[:, None, :2], gt[:, None, 2:], pb[None, :, :2], pb[None, :, 2:]
            inter = (np.minimum(a2, b2) - np.maximum(a1, b1)).clip(0).prod(2)
            iou = inter / ((a2 - a1).prod(2) + (b2 - b1).prod(2) - inter + 1e-7)
            iou = iou * (lb[:, 0:1] == pc)
            for i, t in enumerate(iouv.tolist()):
                m = np.array(np.nonzero(iou >= t)).T
                if m.shape[0] > 1:
                    m = m[iou[m[:, 0], m[:, 1]].argsort()[::-1]]
                    m = m[np.unique(m[:, 1], return_index=True)[1]]
                    m = m[np.unique(m[:, 0], return_index=True)[1]]
                tp[m[:, 1].astype(int), i] = True
        tps.append(tp), confs.append(np.array([p["score"] for p in ps], np.float32)), pcls.append(pc), tcls.append(lb[:, 0])
    tp, conf, pred_cls, target_cls = (np.concatenate(v, 0) for v in (tps, confs, pcls, tcls))
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, nt = np.unique(target_cls, return_counts=True)
    x, x101 = np.linspace(0, 1, 1000), np.linspace(0, 1, 101)
    ap, pc_, rc_ = np.zeros((len(classes), 10)), np.zeros((len(classes), 1000)), np.zeros((len(classes), 1000))
    for ci, cl in enumerate(classes):
        i = pred_cls == cl
        if not i.any():
            continue
        tpc, fpc = tp[i].cumsum(0), (1 - tp[i]).cumsum(0)
        recall, precision = tpc / (nt[ci] + 1e-16), tpc / (tpc + fpc)
        rc_[ci] = np.interp(-x, -conf[i], recall[:, 0], left=0)
        pc_[ci] = np.interp(-x, -conf[i], precision[:, 0], left=1)
        for j in range(10):
            mrec, mpre = np.concatenate(([0.0], recall[:, j], [1.0])), np.concatenate(([1.0], precision[:, j], [0.0]))
            y = np.interp(x101, mrec, np.flip(np.maximum.accumulate(np.flip(mpre))))
            ap[ci, j] = np.sum(np.diff(x101) * (y[1:] + y[:-1]) / 2.0)
    f1 = (2 * pc_ * rc_ / (pc_ + rc_ + 1e-16)).mean(0)
    k = np.convolve(np.concatenate((np.full(50, f1[0]), f1, np.full(50, f1[-1]))), np.ones(101) / 101, "valid").argmax()
    return pc_[:, k].mean(), rc_[:, k].mean(), ap[:, 0].mean(), ap.mean()


def table(stdout):
    """Rows of the results table by class name: [images, instances, P, R, mAP50, mAP50-95]."""
    rows = {}
    lines = stdout.splitlines()
    header = [i for i, l in enumerate(lines) if l.split() == ["Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95"]]
    if not header:
        return rows
    for line in lines[header[0] + 1:]:
        if line.startswith("Speed:"):
            break
        name, values = line[:22].strip(), line[22:].split()
        rows[name] = [int(values[0]), int(values[1])] + [float(v) for v in values[2:]]
    return rows


shutil.copy(os.path.join(shared, "models", "yolov8n.onnx"), work)
r = k("export", "model=yolov8n.onnx", "format=engine", "device=cpu")
c.check(r.returncode == 0, "export yolov8n.engine")

# COCO128 with Ultralytics' defaults (conf 0.001, IoU 0.7, 300 boxes, multi-label NMS).
r = k("val", "model=yolov8n.engine", f"data={os.path.join(coco128, 'coco128.yaml')}", "save_json=True")
c.check(r.returncode == 0, f"val on coco128 exits 0 ({r.stderr.strip().splitlines()[-1:] if r.returncode else ''})")
rows = table(r.stdout)
every = rows.get("all")
print("all:", every)
c.check(every is not None and every[0] == 128 and every[1] == 929, "the all row counts 128 images and 929 instances")
c.check(every is not None and every[5] >= 0.466, f"mAP50-95 >= 0.466 (Ultralytics 8.2.82: 0.4699)")
c.check(every is not None and every[4] >= 0.60, f"mAP50 >= 0.60 (Ultralytics 8.2.82: 0.6191)")
c.check(every is not None and 0.60 <= every[2] <= 0.70 and 0.52 <= every[3] <= 0.62, "P and R near 0.652 and 0.571")
c.check("person" in rows and rows["person"][1] == 254 and len(rows) > 50, "verbose per-class rows for the classes with labels")
c.check("val: 100%|██████████| 128/128 [" in r.stderr, "progress bar on stderr")
c.check("Speed:" in r.stdout and "per image at shape (1, 3, 640, 640)" in r.stdout, "Speed line")
c.check("Results saved to runs/detect/val\n" in r.stdout, "results in runs/detect/val")
recs = json.load(open(os.path.join(work, "runs/detect/val/predictions.json")))
c.check(len(recs) > 1000 and {"image_id", "category_id", "bbox", "score"} <= recs[0].keys() and isinstance(recs[0]["image_id"], int),
        f"save_json writes COCO records ({len(recs)})")
c.check(max(x["category_id"] for x in recs) <= 79, "coco128 is not COCO val2017: class ids stay 0-79, as Ultralytics")
ref = numpy_metrics(recs, coco128)
print("NumPy re-implementation of Ultralytics' metrics on predictions.json: P %.4f R %.4f mAP50 %.4f mAP50-95 %.4f" % ref)
# The table has 3 significant digits; the JSON's rounded boxes and scores move the metrics by about 1e-5.
c.check(every is not None and all(abs(a - b) <= 6e-4 for a, b in zip(every[2:], ref)),
        "the printed P, R, mAP50, mAP50-95 agree with a NumPy transcription of Ultralytics' metrics")

# A small dataset: two COCO128 images, a broken image, a corrupt label file; verbose=False prints only `all`.
mini = os.path.join(work, "mini")
os.makedirs(os.path.join(mini, "images", "val"))
os.makedirs(os.path.join(mini, "labels", "val"))
for stem in ("000000000009", "000000000025"):
    shutil.copy(os.path.join(coco128, "images", "train2017", stem + ".jpg"), os.path.join(mini, "images", "val"))
    shutil.copy(os.path.join(coco128, "labels", "train2017", stem + ".txt"), os.path.join(mini, "labels", "val"))
shutil.copy(os.path.join(coco128, "images", "train2017", "000000000030.jpg"), os.path.join(mini, "images", "val"))
open(os.path.join(mini, "labels", "val", "000000000030.txt"), "w").write("0 0.5 0.5 1.5 0.2\n")  # out of bounds
open(os.path.join(mini, "images", "val", "broken.jpg"), "wb").write(b"not a jpeg")
names = "\n".join(f"  {i}: c{i}" for i in range(80))
open(os.path.join(mini, "mini.yaml"), "w").write(f"path: .\ntrain: images/val\nval: images/val\nnames:\n{names}\n")
r = k("val", "model=yolov8n.engine", f"data={os.path.join(mini, 'mini.yaml')}", "verbose=False", "name=mini")
rows = table(r.stdout)
c.check(r.returncode == 0 and list(rows) == ["all"] and rows["all"][0] == 2, f"broken image and corrupt label skipped: {rows}")
c.check("broken.jpg" in r.stderr and "000000000030.jpg: ignoring corrupt image/label" in r.stderr, "both warned about")
c.check("Results saved to runs/detect/mini\n" in r.stdout, "name= sets the run folder")
# The bar is redrawn in place: '\r' before each state (text mode would have turned it into '\n').
raw = subprocess.run([k.kestrel, "val", "model=yolov8n.engine", f"data={os.path.join(mini, 'mini.yaml')}", "plots=False"],
                     cwd=work, capture_output=True, timeout=600)
c.check(raw.stderr.count(b"\rval: ") >= 2 and raw.stderr.endswith(b"]\n"), "the bar is updated with \\r and ends its line")
c.check(b"Results saved" not in raw.stdout, "plots=False and save_json=False: no 'Results saved' line, as Ultralytics")

# Bad input.
k.one_line_error(k("val", "model=yolov8n.engine", "data=missing.yaml"), "missing dataset yaml", "missing.yaml")
open(os.path.join(work, "malformed.yaml"), "w").write("path: .\nval: [images\nnames: {0: a\n")
k.one_line_error(k("val", "model=yolov8n.engine", "data=malformed.yaml"), "malformed yaml", "not valid YAML")
os.makedirs(os.path.join(work, "empty", "images", "val"))
open(os.path.join(work, "empty", "empty.yaml"), "w").write("val: images/val\nnames: [a]\n")
k.one_line_error(k("val", "model=yolov8n.engine", "data=empty/empty.yaml"), "empty val folder", "no images found")
k.one_line_error(k("val", "model=yolov8n.engine", "data=empty/empty.yaml", "split=test"), "missing split key", "'test:'")
open(os.path.join(work, "nofolder.yaml"), "w").write("val: nowhere/images\nnames: [a]\n")
k.one_line_error(k("val", "model=yolov8n.engine", "data=nofolder.yaml"), "missing val folder", "does not exist")
k.one_line_error(k("val", "model=yolov8n.engine"), "no data=", "data=")
seg = os.path.join(shared, "models", "yolov8n-seg.onnx")
k.one_line_error(k("val", f"model={seg}", f"data={os.path.join(mini, 'mini.yaml')}"), "segment model", "'segment'")
if c.failed == 0:
    shutil.rmtree(work, ignore_errors=True)
c.finish()
