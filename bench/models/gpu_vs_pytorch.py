"""PyTorch peer for the GPU benchmark: a YOLOv8 ONNX model run by PyTorch (eager and torch.compile), FP16.

The ONNX graph is executed by a small interpreter (OnnxModule below: one torch op per ONNX node, the
model's own initializers as nn.Parameters, constant subgraphs folded at build time, Reshape targets
that embed batch 1 rewritten to the runtime batch), so PyTorch runs exactly the weights Kestrel runs
with no onnx2torch/ultralytics dependency. First a correctness check at --check-batch (default 2): FP32
(TF32 off) against ONNX Runtime CPU (relative L2, fails with exit 1 above 1e-3) and FP16 eager
(channels_last) against FP32. Then per mode and batch: warm-up (compilation outside the timed region),
--iters timed runs issued back to back, each between its own pair of CUDA events (GPU time of the
forward on a device-resident FP16 channels_last input, rotating over several input buffers), as
`kestrel benchmark` times CUDA engines; --sync-each synchronises after every run instead. median and
p99 are the same order statistics as `kestrel benchmark`'s; wall ms/iter is host time over the loop.
Usage (one H100; the JSON is rewritten after every measurement, so a killed run keeps what it has):
  python bench/models/gpu_vs_pytorch.py --model ../shared/models/yolov8n.onnx --quick --json runs/pt_quick.json
  python bench/models/gpu_vs_pytorch.py --model ../shared/models/yolov8n.onnx --modes eager,reduce-overhead \
      --json runs/pt.json
  python bench/models/gpu_vs_pytorch.py --model ../shared/models/yolov8n.onnx --modes max-autotune \
      --autotune-batches 1,64 --json runs/pt.json --append
  python bench/models/gpu_vs_pytorch.py --model ../shared/models/yolov8n-seg.onnx --device cpu   # check only
Modes: eager, default (torch.compile, no CUDA graphs), reduce-overhead, max-autotune; compiled modes use
fullgraph=True and dynamic=False (one specialised graph per batch size; dynamo is reset between them).
Exit codes: 0 ok, 1 correctness failure or a failed measurement, 2 no CUDA device.
"""
import argparse
import copy
import gc
import json
import math
import os
import platform
import sys
import time
import traceback

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import numpy_helper

# ---------------------------------------------------------------------------------------------------
# ONNX -> torch interpreter
# ---------------------------------------------------------------------------------------------------
# Each op factory gets (attrs, consts, ctx): consts[i] is the build-time value (CPU tensor) of input i
# when it is static (initializer, Constant or folded), else None; ctx has opset, dynamic (whether the
# node depends on the image) and the build-time batch. It returns fn or (fn, uses): fn(*inputs) -> tensor
# or tuple of tensors; uses = input indices read as tensors at run time (default: all present inputs).
# Static inputs consumed as Python values (shapes, axes, split sizes, scales) are baked into fn, so the
# forward has no data-dependent control flow.

_DT = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
       9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}
OPS = {}


def op(*names):
    def reg(f):
        for n in names:
            OPS[n] = f
        return f
    return reg


def ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


def floats(t):
    return [float(v) for v in t.reshape(-1).tolist()]


def _axis_arg(a, c, ctx, idx=1):
    """Axes from attribute (old opsets) or from input idx (newer opsets); None when absent."""
    if "axes" in a:
        return list(a["axes"])
    if len(c) > idx and c[idx] is not None:
        return ints(c[idx])
    return None


for _name, _f in {"Sigmoid": torch.sigmoid, "Relu": torch.relu, "Tanh": torch.tanh, "Exp": torch.exp,
                  "Log": torch.log, "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs, "Erf": torch.erf,
                  "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round, "Reciprocal": torch.reciprocal,
                  "Sin": torch.sin, "Cos": torch.cos, "Not": torch.logical_not, "Softplus": F.softplus,
                  "Sign": torch.sign}.items():
    OPS[_name] = lambda a, c, ctx, f=_f: f

for _name, _f in {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Pow": torch.pow, "Equal": torch.eq,
                  "Less": torch.lt, "Greater": torch.gt, "LessOrEqual": torch.le, "GreaterOrEqual": torch.ge,
                  "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
                  "MatMul": torch.matmul}.items():
    OPS[_name] = lambda a, c, ctx, f=_f: f


@op("Div")
def _div(a, c, ctx):
    def fn(x, y):
        if not x.dtype.is_floating_point and not y.dtype.is_floating_point:
            return torch.div(x, y, rounding_mode="trunc")
        return x / y
    return fn


@op("Mod")
def _mod(a, c, ctx):
    return (lambda x, y: torch.fmod(x, y)) if a.get("fmod", 0) else (lambda x, y: torch.remainder(x, y))


@op("Max", "Min", "Sum", "Mean")
def _variadic(a, c, ctx):
    kind = ctx["op"]

    def fn(*xs):
        r = xs[0]
        for x in xs[1:]:
            r = torch.maximum(r, x) if kind == "Max" else torch.minimum(r, x) if kind == "Min" else r + x
        return r / len(xs) if kind == "Mean" else r
    return fn


@op("Identity", "Dropout")
def _identity(a, c, ctx):
    return lambda x, *rest: x


@op("LeakyRelu")
def _leaky(a, c, ctx):
    s = a.get("alpha", 0.01)
    return lambda x: F.leaky_relu(x, s)


@op("Elu")
def _elu(a, c, ctx):
    s = a.get("alpha", 1.0)
    return lambda x: F.elu(x, s)


@op("HardSigmoid")
def _hsig(a, c, ctx):
    al, be = a.get("alpha", 0.2), a.get("beta", 0.5)
    return lambda x: torch.clamp(x * al + be, 0, 1)


@op("HardSwish")
def _hswish(a, c, ctx):
    return lambda x: F.hardswish(x)


@op("Clip")
def _clip(a, c, ctx):
    lo, hi = a.get("min"), a.get("max")
    if len(c) > 1 and c[1] is not None:
        lo = float(c[1])
    if len(c) > 2 and c[2] is not None:
        hi = float(c[2])
    if (len(c) > 1 and ctx["inputs"][1] and c[1] is None) or (len(c) > 2 and ctx["inputs"][2] and c[2] is None):
        raise NotImplementedError("Clip with dynamic bounds")
    return (lambda x, *r: torch.clamp(x, lo, hi)), (0,)


@op("Where")
def _where(a, c, ctx):
    return lambda cond, x, y: torch.where(cond, x, y)


@op("Cast")
def _cast(a, c, ctx):
    dt = _DT[a["to"]]
    if ctx["dynamic"] and dt.is_floating_point:
        # Float -> float casts keep the module's compute dtype (so .half() stays FP16 end to end).
        return lambda x: x if x.dtype.is_floating_point else x.to(torch.get_default_dtype())
    return lambda x: x.to(dt)


@op("Conv")
def _conv(a, c, ctx):
    ks = a.get("kernel_shape") or list(c[1].shape[2:])
    nd = len(ks)
    st, dil, g = a.get("strides", [1] * nd), a.get("dilations", [1] * nd), a.get("group", 1)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    pads, auto = a.get("pads", [0] * 2 * nd), a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        def fn(x, w, b=None):
            p = []
            for i in range(nd):
                n = x.shape[2 + i]
                out = (n + st[i] - 1) // st[i]
                tot = max(0, (out - 1) * st[i] + (ks[i] - 1) * dil[i] + 1 - n)
                lo = tot // 2 if auto == "SAME_UPPER" else tot - tot // 2
                p = [lo, tot - lo] + p
            return conv(F.pad(x, p), w, b, st, 0, dil, g)
        return fn
    if auto == "VALID":
        pads = [0] * 2 * nd
    if pads[:nd] == pads[nd:]:
        return lambda x, w, b=None: conv(x, w, b, st, pads[:nd], dil, g)
    fp = []
    for i in range(nd):
        fp = [pads[i], pads[nd + i]] + fp
    return lambda x, w, b=None: conv(F.pad(x, fp), w, b, st, 0, dil, g)


@op("ConvTranspose")
def _convt(a, c, ctx):
    ks = a.get("kernel_shape") or list(c[1].shape[2:])
    nd = len(ks)
    st, dil, g = a.get("strides", [1] * nd), a.get("dilations", [1] * nd), a.get("group", 1)
    pads, op_ = a.get("pads", [0] * 2 * nd), a.get("output_padding", [0] * nd)
    if "output_shape" in a or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or pads[:nd] != pads[nd:]:
        raise NotImplementedError("ConvTranspose with output_shape, auto_pad or asymmetric pads")
    convt = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    return lambda x, w, b=None: convt(x, w, b, st, pads[:nd], op_, g, dil)


def _pool_pads(a, nd):
    pads = a.get("pads", [0] * 2 * nd)
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise NotImplementedError("pooling with auto_pad SAME_*")
    return pads


@op("MaxPool")
def _maxpool(a, c, ctx):
    ks = a["kernel_shape"]
    nd = len(ks)
    st, dil, ceil = a.get("strides", [1] * nd), a.get("dilations", [1] * nd), bool(a.get("ceil_mode", 0))
    pads = _pool_pads(a, nd)
    pool = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    if pads[:nd] == pads[nd:] and all(2 * p <= k for p, k in zip(pads[:nd], ks)):
        return lambda x: pool(x, ks, st, pads[:nd], dil, ceil)
    fp = []
    for i in range(nd):
        fp = [pads[i], pads[nd + i]] + fp
    return lambda x: pool(F.pad(x, fp, value=float("-inf")), ks, st, 0, dil, ceil)


@op("AveragePool")
def _avgpool(a, c, ctx):
    ks = a["kernel_shape"]
    nd = len(ks)
    st, ceil, cip = a.get("strides", [1] * nd), bool(a.get("ceil_mode", 0)), bool(a.get("count_include_pad", 0))
    pads = _pool_pads(a, nd)
    if pads[:nd] != pads[nd:]:
        raise NotImplementedError("AveragePool with asymmetric pads")
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    return lambda x: pool(x, ks, st, pads[:nd], ceil, cip)


@op("GlobalAveragePool", "GlobalMaxPool")
def _gpool(a, c, ctx):
    if ctx["op"] == "GlobalAveragePool":
        return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
    return lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


@op("BatchNormalization")
def _bn(a, c, ctx):
    eps = a.get("epsilon", 1e-5)
    return (lambda x, s, b, m, v, *r: F.batch_norm(x, m, v, s, b, False, 0.0, eps)), (0, 1, 2, 3, 4)


@op("Gemm")
def _gemm(a, c, ctx):
    al, be, ta, tb = a.get("alpha", 1.0), a.get("beta", 1.0), a.get("transA", 0), a.get("transB", 0)
    if al == 1.0 and be == 1.0 and not ta and tb:
        return lambda x, w, b=None: F.linear(x, w, b)

    def fn(x, w, b=None):
        y = (x.t() if ta else x) @ (w.t() if tb else w)
        if al != 1.0:
            y = y * al
        return y if b is None else y + (b * be if be != 1.0 else b)
    return fn


@op("Softmax", "LogSoftmax")
def _softmax(a, c, ctx):
    f = torch.softmax if ctx["op"] == "Softmax" else torch.log_softmax
    if ctx["opset"] >= 13:
        ax = a.get("axis", -1)
        return lambda x: f(x, ax)
    ax = a.get("axis", 1)   # opset < 13: coerce to 2-D at axis

    def fn(x):
        k = ax % x.dim()
        if k == x.dim() - 1:
            return f(x, -1)
        return f(x.reshape(math.prod(x.shape[:k]), -1), 1).reshape(x.shape)
    return fn


@op("Concat")
def _concat(a, c, ctx):
    ax = a["axis"]
    return lambda *xs: torch.cat(xs, ax)


@op("Split")
def _split(a, c, ctx):
    ax, n = a.get("axis", 0), ctx["n_out"]
    sizes = list(a["split"]) if "split" in a else ints(c[1]) if len(c) > 1 and c[1] is not None else None
    if len(c) > 1 and ctx["inputs"][1] and c[1] is None:
        raise NotImplementedError("Split with dynamic sizes")
    if sizes is not None:
        return (lambda x, *r: torch.split(x, sizes, ax)), (0,)

    def fn(x, *r):   # equal parts (num_outputs in opset 18; last part smaller when uneven)
        d = x.shape[ax]
        k = -(-d // n)
        return torch.split(x, [k] * (n - 1) + [d - k * (n - 1)], ax)
    return fn, (0,)


@op("Transpose")
def _transpose(a, c, ctx):
    perm = a.get("perm")
    return lambda x: x.permute(perm if perm is not None else list(range(x.dim() - 1, -1, -1)))


def _static(c, i, what):
    if len(c) <= i or c[i] is None:
        raise NotImplementedError(f"{what} needs a static input {i} (it depends on the image)")
    return c[i]


@op("Reshape")
def _reshape(a, c, ctx):
    shape = ints(_static(c, 1, "Reshape"))
    allowzero = a.get("allowzero", 0)
    # Batch: a static target whose dim 0 equals the build-time batch (1 for static exports, or a
    # Shape-derived value folded at batch 1) follows the input's dim 0 at run time.
    batch_follow = ctx["dynamic"] and len(shape) > 0 and shape[0] == ctx["batch"]

    def fn(x, *r):
        s = [x.shape[i] if (v == 0 and not allowzero) else v for i, v in enumerate(shape)]
        if batch_follow:
            s[0] = x.shape[0]
        return x.reshape(s)
    return fn, (0,)


@op("Flatten")
def _flatten(a, c, ctx):
    ax = a.get("axis", 1)

    def fn(x):
        k = ax % x.dim() if ax < 0 else ax
        return x.reshape(1, -1) if k == 0 else x.reshape(math.prod(x.shape[:k]), -1)
    return fn


@op("Squeeze")
def _squeeze(a, c, ctx):
    axes = _axis_arg(a, c, ctx)

    def fn(x, *r):
        if axes is None:
            return x.squeeze()
        return x.squeeze(tuple(v % x.dim() for v in axes))
    return fn, (0,)


@op("Unsqueeze")
def _unsqueeze(a, c, ctx):
    axes = _axis_arg(a, c, ctx)

    def fn(x, *r):
        n = x.dim() + len(axes)
        for v in sorted(v % n for v in axes):
            x = x.unsqueeze(v)
        return x
    return fn, (0,)


@op("Expand")
def _expand(a, c, ctx):
    shape = ints(_static(c, 1, "Expand"))
    return (lambda x, *r: x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(shape)))), (0,)


@op("Tile")
def _tile(a, c, ctx):
    reps = ints(_static(c, 1, "Tile"))
    return (lambda x, *r: x.repeat(reps)), (0,)


@op("Slice")
def _slice(a, c, ctx):
    if ctx["opset"] < 10:
        starts, ends, axes = list(a["starts"]), list(a["ends"]), a.get("axes")
        steps = None
    else:
        starts, ends = ints(_static(c, 1, "Slice")), ints(_static(c, 2, "Slice"))
        axes = ints(c[3]) if len(c) > 3 and c[3] is not None else None
        steps = ints(c[4]) if len(c) > 4 and c[4] is not None else None
        if any(ctx["inputs"][i] and c[i] is None for i in range(3, len(c))):
            raise NotImplementedError("Slice with dynamic axes/steps")
    axes = list(axes) if axes is not None else list(range(len(starts)))
    steps = steps or [1] * len(starts)

    def fn(x, *r):
        idx = [slice(None)] * x.dim()
        flips = []
        for s, e, ax, k in zip(starts, ends, axes, steps):
            ax = ax % x.dim()
            if k > 0:
                idx[ax] = slice(s, e, k)   # Python slice clamping == ONNX clamping for positive steps
            else:
                n = x.shape[ax]
                s = min(max(s + n if s < 0 else s, 0), n - 1)
                e = min(max(e + n if e < 0 else e, -1), n - 1)
                flips.append(ax)
                idx[ax] = slice(n - 1 - s, n - 1 - e, -k)
        if flips:
            x = x.flip(flips)
        return x[tuple(idx)]
    return fn, (0,)


@op("Gather")
def _gather(a, c, ctx):
    ax = a.get("axis", 0)

    def fn(x, i):
        k = ax % x.dim()
        if i.dim() == 0:
            return x.index_select(k, i.reshape(1) % x.shape[k]).squeeze(k)
        return x[(slice(None),) * k + (i % x.shape[k],)]
    return fn


@op("Pad")
def _pad(a, c, ctx):
    mode = a.get("mode", "constant")
    if ctx["opset"] < 11:
        pads, val, axes = list(a["pads"]), a.get("value", 0.0), None
    else:
        pads = ints(_static(c, 1, "Pad"))
        val = float(c[2]) if len(c) > 2 and c[2] is not None else 0.0
        axes = ints(c[3]) if len(c) > 3 and c[3] is not None else None
    fmode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]

    def fn(x, *r):
        nd = x.dim()
        ax = [v % nd for v in axes] if axes is not None else list(range(nd))
        n = len(ax)
        full = [0] * (2 * (nd - min(ax)))   # F.pad lists (begin, end) from the last dim backwards
        for j in range(n):
            d = nd - 1 - ax[j]
            full[2 * d], full[2 * d + 1] = pads[j], pads[n + j]
        return F.pad(x, full, value=val) if fmode == "constant" else F.pad(x, full, mode=fmode)
    return fn, (0,)


@op("Resize", "Upsample")
def _resize(a, c, ctx):
    mode, nm = a.get("mode", "nearest"), a.get("nearest_mode", "round_prefer_floor")
    ctm = a.get("coordinate_transformation_mode", "half_pixel" if ctx["op"] == "Resize" and ctx["opset"] >= 11
                else "asymmetric")
    scales = sizes = None
    if ctx["op"] == "Upsample" or ctx["opset"] < 11:
        scales = list(a["scales"]) if "scales" in a else floats(_static(c, 1, "Resize"))
    else:
        if len(c) > 3 and ctx["inputs"][3]:
            sizes = ints(_static(c, 3, "Resize sizes"))
        elif len(c) > 2 and ctx["inputs"][2]:
            scales = floats(_static(c, 2, "Resize scales"))
        if scales is not None and len(scales) == 0:
            scales = None
        if scales is None and sizes is None:
            raise NotImplementedError("Resize without scales or sizes")
    if scales is not None and (scales[0] != 1 or scales[1] != 1):
        raise NotImplementedError("Resize of batch or channel dims")
    if mode == "nearest":
        if ctm == "asymmetric" and nm == "floor":
            tm, ac = "nearest", None
        elif ctm in ("half_pixel", "pytorch_half_pixel") and nm in ("round_prefer_ceil", "round_prefer_floor"):
            tm, ac = "nearest-exact", None
        else:
            raise NotImplementedError(f"Resize nearest with {ctm}/{nm}")
    elif mode == "linear":
        if ctm == "align_corners":
            ac = True
        elif ctm in ("half_pixel", "pytorch_half_pixel"):
            ac = False
        else:
            raise NotImplementedError(f"Resize linear with {ctm}")
        tm = None
    else:
        raise NotImplementedError(f"Resize mode {mode}")

    def fn(x, *r):
        m = tm or {3: "linear", 4: "bilinear", 5: "trilinear"}[x.dim()]
        if sizes is not None:
            return F.interpolate(x, size=tuple(sizes[2:]), mode=m, align_corners=ac)
        return F.interpolate(x, scale_factor=tuple(scales[2:]), mode=m, align_corners=ac)
    return fn, (0,)


def _reduce(kind):
    def factory(a, c, ctx):
        axes = _axis_arg(a, c, ctx)
        keep = bool(a.get("keepdims", 1))
        noop = a.get("noop_with_empty_axes", 0)

        def fn(x, *r):
            if not axes:
                if noop:
                    return x
                dims = tuple(range(x.dim()))
            else:
                dims = tuple(v % x.dim() for v in axes)
            if kind == "mean":
                return x.mean(dims, keepdim=keep)
            if kind == "sum":
                return x.sum(dims, keepdim=keep)
            return x.amax(dims, keepdim=keep) if kind == "max" else x.amin(dims, keepdim=keep)
        return fn, (0,)
    return factory


for _k in ("Mean", "Sum", "Max", "Min"):
    OPS["Reduce" + _k] = _reduce(_k.lower())


@op("ArgMax", "ArgMin")
def _argmax(a, c, ctx):
    ax, keep = a.get("axis", 0), bool(a.get("keepdims", 1))
    f = torch.argmax if ctx["op"] == "ArgMax" else torch.argmin
    return lambda x: f(x, ax, keep)


# Shape-level ops: only ever folded at build time (their inputs are static there).
@op("Shape")
def _shape(a, c, ctx):
    s, e = a.get("start", 0), a.get("end")
    return lambda x: torch.tensor(list(x.shape)[s:e], dtype=torch.int64)


@op("Size")
def _size(a, c, ctx):
    return lambda x: torch.tensor(x.numel(), dtype=torch.int64)


@op("ConstantOfShape")
def _cos(a, c, ctx):
    v = torch.from_numpy(numpy_helper.to_array(a["value"]).copy()) if "value" in a else torch.zeros(1)
    return lambda s: torch.full(ints(s), v.reshape(-1)[0].item(), dtype=v.dtype)


@op("Range")
def _range(a, c, ctx):
    return lambda s, l, d: torch.arange(s.item(), l.item(), d.item(), dtype=s.dtype)


def _constant_value(a):
    if "value" in a:
        return torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
    for k, dt in (("value_float", torch.float32), ("value_int", torch.int64)):
        if k in a:
            return torch.tensor(a[k], dtype=dt)
    for k, dt in (("value_floats", torch.float32), ("value_ints", torch.int64)):
        if k in a:
            return torch.tensor(list(a[k]), dtype=dt)
    raise NotImplementedError("Constant without a numeric value")


FOLD_ONLY = {"Shape", "Size", "ConstantOfShape", "Range"}


class OnnxModule(torch.nn.Module):
    """Executes an ONNX graph with torch ops. forward(images) -> tensor, or tuple for several outputs."""

    def __init__(self, model, ref_hw=(640, 640)):
        super().__init__()
        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        static = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in g.initializer}
        inputs = [i for i in g.input if i.name not in static]
        if len(inputs) != 1:
            raise ValueError(f"expected one graph input, got {[i.name for i in inputs]}")
        inp = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        self.input_name = inp.name
        self.batch0 = dims[0] if dims[0] else 1   # build-time batch (what Reshape constants embed)
        self.input_shape = [self.batch0, dims[1] or 3] + [d or r for d, r in zip(dims[2:], ref_hw)]
        self.output_names = [o.name for o in g.output]
        dyn = {inp.name}
        # A Shape/Size of an image-dependent tensor needs build-time shapes: one reference run at batch0.
        needs_ref = False
        for n in g.node:
            if any(i in dyn for i in n.input):
                if n.op_type in ("Shape", "Size"):
                    needs_ref = True
                else:
                    dyn.update(o for o in n.output if o)
        ref = {inp.name: torch.rand(self.input_shape)} if needs_ref else None
        self._steps = []
        self._param_of = {}   # ONNX value name -> attribute name
        with torch.no_grad():
            for n in g.node:
                a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
                a = {k: v.decode() if isinstance(v, bytes) else v for k, v in a.items()}
                outs = list(n.output)
                if n.op_type == "Constant":
                    static[outs[0]] = _constant_value(a)
                    continue
                if n.op_type not in OPS:
                    raise NotImplementedError(f"ONNX op {n.op_type} (node {n.name}) is not supported")
                is_dyn = any(i in dyn for i in n.input if i) and n.op_type not in ("Shape", "Size")
                consts = [static.get(i) if i else None for i in n.input]
                ctx = {"opset": self.opset, "dynamic": is_dyn, "batch": self.batch0, "op": n.op_type,
                       "n_out": len(outs), "inputs": [bool(i) for i in n.input]}
                r = OPS[n.op_type](a, consts, ctx)
                fn, uses = r if isinstance(r, tuple) else (r, tuple(k for k, i in enumerate(n.input) if i))
                if not is_dyn:   # fold
                    args = [(ref[i] if i in dyn else static[i]) if i else None for i in n.input]
                    res = fn(*args)
                    res = res if isinstance(res, (tuple, list)) else (res,)
                    for o, t in zip(outs, res):
                        if o:
                            static[o] = t
                    continue
                if n.op_type in FOLD_ONLY:
                    raise NotImplementedError(f"{n.op_type} on an image-dependent tensor (node {n.name})")
                spec = []
                for k, i in enumerate(n.input):
                    if not i or k not in uses:
                        spec.append((0, None))
                    elif i in dyn:
                        spec.append((1, i))
                    else:
                        spec.append((2, self._register(i, static[i])))
                self._steps.append((fn, tuple(spec), tuple(outs)))
                if ref is not None:
                    args = [None if k == 0 else ref[v] if k == 1 else static[i] for (k, v), i in zip(spec, n.input)]
                    res = fn(*args)
                    res = res if isinstance(res, (tuple, list)) else (res,)
                    for o, t in zip(outs, res):
                        if o:
                            ref[o] = t
        # Outputs that are constants become parameters; free each dynamic value after its last use.
        self._out_spec = tuple((1, o) if o in dyn else (2, self._register(o, static[o])) for o in self.output_names)
        last = {}
        for idx, (_, spec, _) in enumerate(self._steps):
            for k, v in spec:
                if k == 1:
                    last[v] = idx
        keep = set(self.output_names)
        frees = [[] for _ in self._steps]
        for v, idx in last.items():
            if v not in keep:
                frees[idx].append(v)
        self._steps = [(fn, spec, outs, tuple(frees[i])) for i, (fn, spec, outs) in enumerate(self._steps)]

    def _register(self, onnx_name, t):
        if onnx_name in self._param_of:
            return self._param_of[onnx_name]
        name = f"c{len(self._param_of)}"
        if t.dtype.is_floating_point:
            self.register_parameter(name, torch.nn.Parameter(t.clone(), requires_grad=False))
        else:
            self.register_buffer(name, t.clone())
        self._param_of[onnx_name] = name
        return name

    def forward(self, x):
        env = {self.input_name: x}
        for fn, spec, outs, frees in self._steps:
            args = [None if k == 0 else env[v] if k == 1 else getattr(self, v) for k, v in spec]
            r = fn(*args)
            if not isinstance(r, (tuple, list)):
                env[outs[0]] = r
            else:
                for o, t in zip(outs, r):
                    if o:
                        env[o] = t
            for v in frees:
                del env[v]
        res = tuple(env[v] if k == 1 else getattr(self, v) for k, v in self._out_spec)
        return res[0] if len(res) == 1 else res


# ---------------------------------------------------------------------------------------------------
# Benchmark
# ---------------------------------------------------------------------------------------------------

def as_list(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def order_stats(ms):
    """median and p99 as `kestrel benchmark` takes them (sorted[n/2], sorted[min(n-1, 0.99 n)])."""
    s = sorted(ms)
    return s[len(s) // 2], s[min(len(s) - 1, int(0.99 * len(s)))]


def ort_reference(path, x):
    """ONNX Runtime CPU outputs for x; a model with a fixed batch runs one image at a time."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    i0 = sess.get_inputs()[0]
    fixed = isinstance(i0.shape[0], int) and i0.shape[0] > 0
    step = i0.shape[0] if fixed else x.shape[0]
    outs = [sess.run(None, {i0.name: x[k:k + step]}) for k in range(0, x.shape[0], step)]
    return [np.concatenate([o[j] for o in outs], 0) for j in range(len(outs[0]))]


def default_iters(b):
    return 200 if b <= 8 else 100 if b <= 32 else 50


def set_recompile_limits():
    for k in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, k):
            setattr(torch._dynamo.config, k, max(getattr(torch._dynamo.config, k), 64))


def versions(dev):
    v = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
         "python": platform.python_version(), "onnx": onnx.__version__, "onnxruntime": ort.__version__,
         "numpy": np.__version__}
    try:
        import triton
        v["triton"] = triton.__version__
    except Exception:
        v["triton"] = None
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        v.update(gpu=torch.cuda.get_device_name(dev), gpu_capability=f"{p.major}.{p.minor}",
                 gpu_memory_gib=round(p.total_memory / 2**30, 1), gpu_sms=p.multi_processor_count)
    else:
        v["cpu"] = platform.machine()
        if os.path.exists("/proc/cpuinfo"):
            with open("/proc/cpuinfo") as f:
                v["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), v["cpu"])
    return v


def measure(m16, mode, b, chw, nbuf, iters, warmup, sync_each, ref_y, tag, dev):
    """Times one (mode, batch); returns its result row."""
    gen = torch.Generator(device=dev).manual_seed(b)
    xs = [torch.rand((b, *chw), device=dev, dtype=torch.float16, generator=gen)
          .contiguous(memory_format=torch.channels_last) for _ in range(nbuf)]
    graphs = mode in ("reduce-overhead", "max-autotune")   # CUDA graphs: outputs live in the graph's pool
    if mode == "eager":
        fn = m16
    else:
        torch._dynamo.reset()
        fn = torch.compile(m16, mode=None if mode == "default" else mode, fullgraph=True, dynamic=False)

    def call(x):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return fn(x)

    err = None
    with torch.inference_mode():
        t0 = time.perf_counter()
        y = [t.float().cpu() for t in as_list(call(xs[0]))]   # compiles (copied out of any graph pool)
        first_s = time.perf_counter() - t0
        if mode == "eager":
            ref_y[b] = y
        else:
            if b not in ref_y:
                ref_y[b] = [t.float().cpu() for t in as_list(m16(xs[0]))]
            err = max(rel_l2(u.numpy(), r.numpy()) for u, r in zip(y, ref_y[b]))
            print(f"{tag} first call {first_s:.1f} s, rel L2 vs FP16 eager {err:.2e}"
                  + ("" if err < 1e-2 else "  WARNING: above 1e-2"), flush=True)
        del y
        for i in range(warmup):
            call(xs[i % nbuf])
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        w0 = time.perf_counter()
        for i in range(iters):
            x = xs[i % nbuf]
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            starts[i].record()
            out = fn(x)
            ends[i].record()
            if sync_each:
                ends[i].synchronize()
            del out
        torch.cuda.synchronize()
        wall = (time.perf_counter() - w0) * 1e3 / iters
        ms = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    med, p99 = order_stats(ms)
    return {"mode": mode, "batch": b, "median_ms": med, "p99_ms": p99, "mean_ms": sum(ms) / len(ms), "min_ms": min(ms),
            "images_per_s": 1e3 * b / med, "wall_ms_per_iter": wall, "iters": iters, "buffers": nbuf,
            "first_call_s": first_s, "rel_l2_vs_fp16_eager": err,
            "max_memory_allocated_gib": torch.cuda.max_memory_allocated(dev) / 2**30}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--batch", default="1,8,32,64,128", help="comma-separated batch sizes")
    p.add_argument("--modes", default="eager,reduce-overhead,max-autotune",
                   help="comma-separated from eager, default, reduce-overhead, max-autotune")
    p.add_argument("--autotune-batches", default=None,
                   help="batch sizes for max-autotune (default: all of --batch); its compilation takes minutes")
    p.add_argument("--iters", type=int, default=None, help="timed runs (default 200 to batch 8, 100 to 32, 50 above)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs after compilation")
    p.add_argument("--buffers", type=int, default=None,
                   help="input buffers to rotate over (default: enough for about 256 MB, 4..64)")
    p.add_argument("--sync-each", action="store_true",
                   help="synchronise after every timed run (then host launch overhead counts in the GPU span)")
    p.add_argument("--check-batch", type=int, default=2)
    p.add_argument("--check-only", action="store_true", help="stop after the correctness check")
    p.add_argument("--imgsz", type=int, default=640, help="input size when the model's H/W are symbolic")
    p.add_argument("--quick", action="store_true", help="batch 1 and 64, eager and reduce-overhead, 50 runs")
    p.add_argument("--no-cudnn-benchmark", action="store_true", help="leave torch.backends.cudnn.benchmark off")
    p.add_argument("--freezing", action="store_true", help="torch._inductor.config.freezing = True")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (correctness check only)")
    p.add_argument("--json", default=None, help="write versions and all numbers here")
    p.add_argument("--append", action="store_true", help="add to the results already in --json")
    a = p.parse_args()
    if a.quick:
        a.batch, a.modes, a.iters = "1,64", "eager,reduce-overhead", a.iters or 50
    batches = [int(b) for b in a.batch.split(",") if b]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("eager", "default", "reduce-overhead", "max-autotune"):
            p.error(f"unknown mode {m}")
    at_batches = [int(b) for b in a.autotune_batches.split(",")] if a.autotune_batches else batches

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device visible to PyTorch (torch.cuda.is_available() is False); "
              "use --device cpu for the correctness check only", file=sys.stderr, flush=True)
        sys.exit(2)
    dev = torch.device(a.device)
    on_gpu = dev.type == "cuda"

    report = {"model": os.path.abspath(a.model), "command": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "versions": versions(dev), "settings": {}, "correctness": {}, "results": [], "errors": []}
    if a.append and a.json and os.path.exists(a.json):
        with open(a.json) as f:
            old = json.load(f)
        report["results"], report["errors"] = old.get("results", []), old.get("errors", [])
        report["correctness_previous"] = old.get("correctness")

    def save():
        if a.json:
            os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
            with open(a.json + ".tmp", "w") as f:
                json.dump(report, f, indent=1)
            os.replace(a.json + ".tmp", a.json)

    v = report["versions"]
    print(f"torch {v['torch']} (CUDA {v['cuda']}, cuDNN {v['cudnn']}), onnxruntime {v['onnxruntime']}, "
          f"device {v.get('gpu', v.get('cpu'))}", flush=True)
    t0 = time.perf_counter()
    proto = onnx.load(a.model)
    base = OnnxModule(proto, (a.imgsz, a.imgsz)).eval()
    _, C, H, W = base.input_shape
    print(f"{os.path.basename(a.model)}: opset {base.opset}, input {base.input_name} [N,{C},{H},{W}], outputs "
          f"{base.output_names}, {len(base._steps)} torch ops, {sum(t.numel() for t in base.parameters())} weights "
          f"(built in {time.perf_counter() - t0:.1f} s)", flush=True)
    report["imgsz"] = [H, W]
    report["outputs"] = base.output_names

    # ---- correctness ----
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    xb = np.random.default_rng(0).random((a.check_batch, C, H, W), dtype=np.float32)
    t0 = time.perf_counter()
    ref = ort_reference(a.model, xb)
    m32 = copy.deepcopy(base).to(dev)
    with torch.inference_mode():
        y32 = [t.float().cpu().numpy() for t in as_list(m32(torch.from_numpy(xb).to(dev)))]
    e32 = {n: rel_l2(y, r) for n, y, r in zip(base.output_names, y32, ref)}
    shapes_ok = all(y.shape == r.shape for y, r in zip(y32, ref))
    print(f"check batch {a.check_batch}: FP32 vs onnxruntime CPU rel L2 "
          + ", ".join(f"{n} {e:.2e}" for n, e in e32.items())
          + ("" if shapes_ok else f"  SHAPE MISMATCH {[y.shape for y in y32]} vs {[r.shape for r in ref]}")
          + f" ({time.perf_counter() - t0:.1f} s)", flush=True)
    report["correctness"] = {"batch": a.check_batch, "fp32_vs_onnxruntime_rel_l2": e32}
    if not shapes_ok or max(e32.values()) > 1e-3 or not all(np.isfinite(list(e32.values()))):
        report["correctness"]["failed"] = True
        save()
        print("FAIL: FP32 output differs from onnxruntime (rel L2 > 1e-3)", file=sys.stderr, flush=True)
        sys.exit(1)
    del m32

    m16 = copy.deepcopy(base).to(dev).half().to(memory_format=torch.channels_last)
    x16 = torch.from_numpy(xb).to(dev).half().contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            y16 = [t.float().cpu().numpy() for t in as_list(m16(x16))]
        e16 = {n: rel_l2(y, r) for n, y, r in zip(base.output_names, y16, y32)}
        print("FP16 eager channels_last vs FP32 rel L2 " + ", ".join(f"{n} {e:.2e}" for n, e in e16.items())
              + ("" if max(e16.values()) < 1e-2 else "  WARNING: above 1e-2"), flush=True)
        report["correctness"]["fp16_vs_fp32_rel_l2"] = e16
    except RuntimeError as ex:   # FP16 convolutions are missing on some CPU builds
        if on_gpu:
            raise
        print(f"FP16 eager on CPU skipped: {str(ex).splitlines()[0]}", flush=True)
    if not on_gpu:
        # Traceability: dynamo with fullgraph=True fails on any graph break; a second batch size checks
        # that the batch follows the input.
        for b in (1, a.check_batch + 1):
            xc = np.random.default_rng(b).random((b, C, H, W), dtype=np.float32)
            torch._dynamo.reset()
            mc = torch.compile(base, backend="eager", fullgraph=True, dynamic=False)
            with torch.inference_mode():
                yc = [t.numpy() for t in as_list(mc(torch.from_numpy(xc)))]
            ec = {n: rel_l2(y, r) for n, y, r in zip(base.output_names, yc, ort_reference(a.model, xc))}
            print(f"torch.compile(backend=eager, fullgraph=True) batch {b} vs onnxruntime rel L2 "
                  + ", ".join(f"{n} {e:.2e}" for n, e in ec.items()), flush=True)
            report["correctness"][f"compiled_eager_backend_batch{b}_vs_onnxruntime_rel_l2"] = ec
            if max(ec.values()) > 1e-3:
                save()
                print("FAIL: traced model differs from onnxruntime", file=sys.stderr, flush=True)
                sys.exit(1)
    save()
    if a.check_only or not on_gpu:
        if not on_gpu:
            print("CPU device: timing skipped", flush=True)
        return 0

    # ---- timing ----
    torch.backends.cudnn.benchmark = not a.no_cudnn_benchmark
    set_recompile_limits()
    if a.freezing:
        torch._inductor.config.freezing = True
    report["settings"] = {"dtype": "float16", "memory_format": "channels_last", "input": "device-resident FP16",
                          "timing": "CUDA events around each forward, " + ("synchronised per iteration" if a.sync_each
                                     else "back to back (like kestrel benchmark's time_compute)"),
                          "cudnn_benchmark": torch.backends.cudnn.benchmark, "freezing": a.freezing,
                          "compile": "fullgraph=True, dynamic=False, dynamo reset per (mode, batch)",
                          "warmup": a.warmup, "median": "sorted[n//2]", "p99": "sorted[min(n-1, int(0.99 n))]"}
    ref_y = {}   # FP16 eager outputs (on the host) per batch, to check each compiled graph against
    rows = []
    failed = 0
    for mode in modes:
        for b in (at_batches if mode == "max-autotune" else batches):
            iters = a.iters or default_iters(b)
            nbuf = a.buffers or min(64, max(4, math.ceil(256e6 / (b * C * H * W * 2))))
            tag = f"[{mode} b={b}]"
            print(f"{tag} {nbuf} input buffers, {a.warmup} warm-up + {iters} timed runs"
                  + ("" if mode == "eager" else " (first call compiles"
                     + ("; max-autotune takes minutes)" if mode == "max-autotune" else ")")), flush=True)
            try:
                row = measure(m16, mode, b, (C, H, W), nbuf, iters, a.warmup, a.sync_each, ref_y, tag, dev)
                rows.append(row)
                report["results"].append(row)
                print(f"{tag} median {row['median_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms, "
                      f"{row['images_per_s']:.1f} images/s (wall {row['wall_ms_per_iter']:.3f} ms/iter)", flush=True)
            except Exception as ex:   # e.g. out of memory, a graph break or an inductor failure: keep the rest
                traceback.print_exc()
                msg = f"{type(ex).__name__}: {str(ex).strip().splitlines()[0] if str(ex).strip() else ''}"
                print(f"{tag} FAILED {msg}", file=sys.stderr, flush=True)
                report["errors"].append({"mode": mode, "batch": b, "error": msg})
                failed += 1
            finally:
                torch._dynamo.reset()   # drops the compiled graph and its CUDA graph pool
                gc.collect()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
                save()

    print(f"\n{os.path.basename(a.model)} FP16 channels_last on {v['gpu']}, torch {v['torch']}, CUDA {v['cuda']}, "
          f"cuDNN {v['cudnn']} (GPU time per forward, CUDA events)")
    print(f"{'mode':16s} {'batch':>6s} {'median ms':>10s} {'p99 ms':>10s} {'images/s':>11s} {'wall ms/it':>10s} "
          f"{'first call s':>12s}")
    for r in rows:
        print(f"{r['mode']:16s} {r['batch']:6d} {r['median_ms']:10.3f} {r['p99_ms']:10.3f} {r['images_per_s']:11.1f} "
              f"{r['wall_ms_per_iter']:10.3f} {r['first_call_s']:12.1f}")
    for e in report["errors"]:
        print(f"{e['mode']:16s} {e['batch']:6d} FAILED {e['error']}")
    if a.json:
        print(f"wrote {a.json}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
