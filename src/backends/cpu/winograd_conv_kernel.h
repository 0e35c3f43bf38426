// 3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3) (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016), AVX2 + FMA, float32, on nChw8c tensors.
//
// Each 4x4 output tile comes from a 6x6 input tile: V = B^T d B (input), U = G g G^T (weights,
// once at creation), M = V . U summed over input channels (36 independent GEMMs), Y = A^T M A.
// That is 36 multiplies per tile and channel pair instead of 144: the 3x3 stride-1 convolutions
// are about two thirds of YOLOv8n's arithmetic, and oneDNN 2.6 has Winograd only for AVX-512
// (BENCHMARKS.md, CPU: the two side by side). Bias, SiLU and the residual add are fused into the output
// transform, as oneDNN's post-ops are for the direct kernel.
//
//   if (cpu::winograd_applies(plan, node)) kernel = cpu::make_winograd_conv_kernel(plan, node);
#pragma once

#include <memory>

#include "backends/cpu/kernel.h"

namespace kestrel::cpu {

// Whether `n` is a convolution this kernel computes: float32 (no precision="int8"), 3x3, stride 1,
// dilation 1, pads 1, one group, input and output channels multiples of 8, input, output and
// residual in the nChw8c layout (batch 1: the CPU plan's), and a CPU with AVX2 and FMA. A node
// attribute algorithm="direct" keeps oneDNN's direct convolution (bench/cpu compares the two).
bool winograd_applies(const plan::ExecutionPlan& plan, const ir::Node& n);

// The kernel for such a node (weights transformed here). Precondition: winograd_applies.
std::unique_ptr<Kernel> make_winograd_conv_kernel(const plan::ExecutionPlan& plan, const ir::Node& n);

}  // namespace kestrel::cpu
