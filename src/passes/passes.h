// Each pass, one per file (see pipeline.cc for their order and docs/passes.md for the catalogue).
#pragma once

#include "ir/graph.h"

namespace kestrel::passes {

// Infers shapes node by node and evaluates (with reference/) every node whose inputs are all
// constants, or a Shape node whose input shape is known. Folds the Shape/Gather/Unsqueeze/Concat
// subgraphs of dynamic exports into constants for the chosen input size.
bool fold_constants(ir::Graph& g);

// Removes Identity nodes, making their readers read the source.
bool eliminate_identity(ir::Graph& g);

// Conv -> BatchNormalization (the conv output read by nothing else) becomes one Conv with the
// normalisation folded into weights and bias: w' = w * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps).
bool fuse_conv_bn(ir::Graph& g);

// y = Conv(x); Mul(y, Sigmoid(y)) (SiLU as exported, y read only by the two) becomes one Conv with
// attribute activation="silu".
bool fuse_conv_silu(ir::Graph& g);

// Add(r, Conv(x)) of equal shapes, where the conv output is read only by the Add and r is computed
// before the conv, becomes Conv(x, w, b, r): the residual is added in the conv epilogue after the
// activation (YOLOv8's Bottleneck: x + SiLU(conv(...))).
bool fuse_conv_residual_add(ir::Graph& g);

// Ultralytics' Detect-head decode (per-level Reshape + Concat, Split, DFL Reshape/Transpose/Softmax/
// 1x1 Conv, the box arithmetic against constant anchors and strides, Sigmoid, final Concat) becomes
// one YoloDecode node reading the level maps; a pattern that differs in any op, axis, size or
// constant, or whose intermediate values are read elsewhere, is left alone. For backends with a
// fused decode kernel (CUDA): run_pipeline runs it only when asked.
bool fuse_yolo_decode(ir::Graph& g);

// YOLOv8's last head convs (per level a 1x1 box conv and a 1x1 class conv, concatenated into the
// map YoloDecode reads) move into YoloDecode (attribute head_convs = 1: it reads their inputs and
// weights); anything but that whole pattern is left alone. For CUDA engines with f16 feature maps
// (FP16, INT8), when asked.
bool fuse_yolo_head_convs(ir::Graph& g);

// Removes nodes none of whose outputs is read or is a graph output.
bool eliminate_dead_nodes(ir::Graph& g);

}  // namespace kestrel::passes
