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
/// out = base + scale * up[rows, rank] x down[rank, cols] (row-major; base may be out): a fused LoRA term.
/// streaming != 0: write out with non-temporal stores (when aligned): for a result not read again soon.
void hs_lowrank_fuse(const float *base, const float *up, const float *down, float *out,
                     ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t rank, float scale, int streaming);
/// Softmax over row[0..<visible] (after multiplying by nothing: scale is applied by the caller's
/// sgemm); row[visible..<count] = 0.
void hs_softmax_row(float *row, ptrdiff_t visible, ptrdiff_t count);
/// GroupNorm over x: [batch, channels, spatial] into y (may equal x), optional fused SiLU.
void hs_group_norm(const float *x, float *y, ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t spatial,
                   ptrdiff_t groups, const float *gamma, const float *beta, float epsilon, int silu);
/// LayerNorm over the last axis of x: [rows, columns] into y (may equal x).
void hs_layer_norm(const float *x, float *y, ptrdiff_t rows, ptrdiff_t columns,
                   const float *gamma, const float *beta, float epsilon);

/// out[o * ldo + p] = sum over k < K of w[o * ldw + k] * cols[k * ldc + p], for o < rows, p < P
/// (few_columns_impl.h): the product of a convolution on a small feature map. cols' rows must be
/// readable up to P rounded up to 16 floats (ldc >= that); the lanes past P are ignored.
void hs_sgemm_few_columns(const float *w, ptrdiff_t ldw, const float *cols, ptrdiff_t ldc,
                          float *out, ptrdiff_t ldo, ptrdiff_t rows, ptrdiff_t K, ptrdiff_t P);

/// y[m * ldy + n] = sum over k < K of x[m][k] * w[n * ldw + k] (+ bias[n]), for m < M and n in [n0, n1)
/// (linear_product_impl.h): a torch Linear with tens to hundreds of rows. x is first packed by
/// hs_linear_pack_x into xp (hs_linear_packed_x_floats(M, K) floats; its hs_linear_panels(M) panels
/// may be packed in parts, in parallel); then each thread computes its own range of weight rows with
/// its own scratch of hs_linear_scratch_floats(M) floats. No synchronisation between the ranges.
void hs_linear_pack_x(const float *x, ptrdiff_t ldx, ptrdiff_t M, ptrdiff_t K, float *xp,
                      ptrdiff_t panel0, ptrdiff_t panel1);
void hs_linear_product(const float *xp, ptrdiff_t M, ptrdiff_t K, const float *w, ptrdiff_t ldw,
                       const float *bias, float *y, ptrdiff_t ldy, ptrdiff_t n0, ptrdiff_t n1, float *scratch);
ptrdiff_t hs_linear_packed_x_floats(ptrdiff_t M, ptrdiff_t K);
ptrdiff_t hs_linear_panels(ptrdiff_t M);
ptrdiff_t hs_linear_scratch_floats(ptrdiff_t M);

/// Winograd F(2x2, 3x3) (winograd_impl.h). U[16][K][C] = G g G^T for w: [K][C][3][3].
void hs_winograd_f23_weights(const float *w, ptrdiff_t K, ptrdiff_t C, float *U);
/// Input tiles of tile rows [tileRow0, tileRow0 + tileRows) of C channel planes src: [C][H][W] (padding 1):
/// V[xi * xiStride + c * tiles + p], tiles = tileRows * tilesW, tilesW = (W + 1) / 2.
/// scratch: 8 * (tilesW + 1) floats.
void hs_winograd_f23_input(const float *src, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                           ptrdiff_t tileRow0, ptrdiff_t tileRows, float *V, ptrdiff_t xiStride, float *scratch);
/// Output rows of those tile rows, dst: [K][H][W], from M[xi * xiStride + k * tiles + p], plus bias
/// (may be NULL). scratch: 4 * tilesW floats.
void hs_winograd_f23_output(const float *M, ptrdiff_t K, ptrdiff_t H, ptrdiff_t W, ptrdiff_t tileRow0,
                            ptrdiff_t tileRows, ptrdiff_t xiStride, const float *bias, float *dst, float *scratch);

/// Winograd F(4x4, 3x3), the same layout with 36 xi and 4x4 output tiles: U[36][K][C]; tilesW = (W + 3) / 4;
/// input scratch 6 * (4 * tilesW + 2) floats, output scratch 16 * tilesW floats.
void hs_winograd_f43_weights(const float *w, ptrdiff_t K, ptrdiff_t C, float *U);
void hs_winograd_f43_input(const float *src, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                           ptrdiff_t tileRow0, ptrdiff_t tileRows, float *V, ptrdiff_t xiStride, float *scratch);
void hs_winograd_f43_output(const float *M, ptrdiff_t K, ptrdiff_t H, ptrdiff_t W, ptrdiff_t tileRow0,
                            ptrdiff_t tileRows, ptrdiff_t xiStride, const float *bias, float *dst, float *scratch);

/// Fused attention of one head (attention_impl.h): o[i * ldo + c] = sum_j softmax_j(q_i . k_j * scale) v[j * ldkv + c]
/// for query rows i < Lq, keys j < Lk, channels c < d (no mask). scratch: hs_attention_scratch_floats(Lk, d) floats.
void hs_attention(const float *q, ptrdiff_t ldq, const float *k, const float *v, ptrdiff_t ldkv,
                  ptrdiff_t Lq, ptrdiff_t Lk, ptrdiff_t d, float scale, float *o, ptrdiff_t ldo, float *scratch);
ptrdiff_t hs_attention_scratch_floats(ptrdiff_t Lk, ptrdiff_t d);

/// 2: AVX-512, 1: AVX2 + FMA, 0: baseline x86-64 (which kernel set runs).
int hs_isa_level(void);

/// What this CPU (and its OS, which must save the wider registers) supports, as HS_CPU_* bits;
/// read through cpuid/xgetbv, never capped by HOTSWAP_ISA. Used to pick OpenBLAS' kernel family.
enum {
    HS_CPU_AVX2_FMA = 1,      /* AVX2 and FMA3 */
    HS_CPU_AVX512 = 2,        /* AVX-512 F, CD, BW, DQ and VL: what OpenBLAS' SkylakeX kernels use */
    HS_CPU_AVX512_BF16 = 4,   /* AVX512_BF16: what its Cooperlake kernels add */
    HS_CPU_VENDOR_AMD = 8,
    HS_CPU_VENDOR_INTEL = 16,
};
int hs_cpu_features(void);

#endif
