// Elementwise and normalization kernels for HotswapCore, in C with explicit vector types so
// that they compile to AVX-512 / AVX2 regardless of how Swift lowers its generic SIMD types
// (on Linux, SIMD16<Float> rounding, clamping and conversions become per-lane generic calls).
// Each kernel is compiled for AVX-512, AVX2 and baseline x86-64 and picked at first use (dispatch.c).
#ifndef HOTSWAP_CKERNELS_H
#define HOTSWAP_CKERNELS_H

#include <stddef.h>

/// x = exp(x), Cephes polynomial, within ~2 ulp; inputs below -87.3 give 0.
void hs_exp(float *x, ptrdiff_t n);
/// x = x * sigmoid(x)
void hs_silu(float *x, ptrdiff_t n);
/// x = x * sigmoid(1.702 x)  (CLIP's quick_gelu)
void hs_quick_gelu(float *x, ptrdiff_t n);
/// x = 0.5 x (1 + erf(x / sqrt 2)), erf as PyTorch's vectorized CPU kernel computes it
/// (Abramowitz-Stegun 7.1.26, |error| <= 1.5e-7).
void hs_gelu(float *x, ptrdiff_t n);
/// x = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void hs_gelu_tanh(float *x, ptrdiff_t n);
/// y[r, i] = x[r, i] * gelu(x[r, inner + i]) for x: [rows, 2 * inner], y: [rows, inner] (GEGLU).
void hs_geglu(const float *x, float *y, ptrdiff_t rows, ptrdiff_t inner);
/// Softmax over row[0..<visible] (after multiplying by nothing: scale is applied by the caller's
/// sgemm); row[visible..<count] = 0.
void hs_softmax_row(float *row, ptrdiff_t visible, ptrdiff_t count);
/// GroupNorm over x: [batch, channels, spatial] into y (may equal x), optional fused SiLU.
void hs_group_norm(const float *x, float *y, ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t spatial,
                   ptrdiff_t groups, const float *gamma, const float *beta, float epsilon, int silu);
/// LayerNorm over the last axis of x: [rows, columns] into y (may equal x).
void hs_layer_norm(const float *x, float *y, ptrdiff_t rows, ptrdiff_t columns,
                   const float *gamma, const float *beta, float epsilon);

/// 2: AVX-512, 1: AVX2 + FMA, 0: baseline x86-64 (which kernel set runs).
int hs_isa_level(void);

#endif
