// Picks the widest kernel set this CPU supports, once, at first use.
#include "ckernels.h"
#include <stdlib.h>
#include <string.h>

#define DECLARE(ret, name, params) \
    ret name##_avx512 params; ret name##_avx2 params; ret name##_baseline params;
DECLARE(void, hs_exp, (float *x, ptrdiff_t n))
DECLARE(void, hs_silu, (float *x, ptrdiff_t n))
DECLARE(void, hs_lowrank_fuse, (const float *base, const float *up, const float *down, float *out,
                                 ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t rank, float scale, int streaming))
DECLARE(void, hs_quick_gelu, (float *x, ptrdiff_t n))
DECLARE(void, hs_gelu, (float *x, ptrdiff_t n))
DECLARE(void, hs_gelu_tanh, (float *x, ptrdiff_t n))
DECLARE(void, hs_geglu, (const float *x, float *y, ptrdiff_t rows, ptrdiff_t inner))
DECLARE(void, hs_softmax_row, (float *row, ptrdiff_t visible, ptrdiff_t count))
DECLARE(void, hs_group_norm, (const float *x, float *y, ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t spatial,
                              ptrdiff_t groups, const float *gamma, const float *beta, float epsilon, int silu))
DECLARE(void, hs_layer_norm, (const float *x, float *y, ptrdiff_t rows, ptrdiff_t columns,
                              const float *gamma, const float *beta, float epsilon))

DECLARE(void, hs_winograd_f23_weights, (const float *w, ptrdiff_t K, ptrdiff_t C, float *U))
DECLARE(void, hs_winograd_f23_input, (const float *src, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                      ptrdiff_t tileRow0, ptrdiff_t tileRows, float *V, ptrdiff_t xiStride, float *scratch))
DECLARE(void, hs_winograd_f23_output, (const float *M, ptrdiff_t K, ptrdiff_t H, ptrdiff_t W, ptrdiff_t tileRow0,
                                       ptrdiff_t tileRows, ptrdiff_t xiStride, const float *bias, float *dst,
                                       float *scratch))

DECLARE(void, hs_winograd_f43_weights, (const float *w, ptrdiff_t K, ptrdiff_t C, float *U))
DECLARE(void, hs_winograd_f43_input, (const float *src, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                      ptrdiff_t tileRow0, ptrdiff_t tileRows, float *V, ptrdiff_t xiStride, float *scratch))
DECLARE(void, hs_winograd_f43_output, (const float *M, ptrdiff_t K, ptrdiff_t H, ptrdiff_t W, ptrdiff_t tileRow0,
                                       ptrdiff_t tileRows, ptrdiff_t xiStride, const float *bias, float *dst,
                                       float *scratch))
DECLARE(void, hs_sgemm_few_columns, (const float *w, ptrdiff_t ldw, const float *cols, ptrdiff_t ldc,
                                     float *out, ptrdiff_t ldo, ptrdiff_t rows, ptrdiff_t K, ptrdiff_t P))
DECLARE(void, hs_linear_pack_x, (const float *x, ptrdiff_t ldx, ptrdiff_t M, ptrdiff_t K, float *xp,
                                  ptrdiff_t panel0, ptrdiff_t panel1))
DECLARE(void, hs_linear_product, (const float *xp, ptrdiff_t M, ptrdiff_t K, const float *w, ptrdiff_t ldw,
                                   const float *bias, float *y, ptrdiff_t ldy, ptrdiff_t n0, ptrdiff_t n1,
                                   float *scratch))
DECLARE(ptrdiff_t, hs_linear_packed_x_floats, (ptrdiff_t M, ptrdiff_t K))
DECLARE(ptrdiff_t, hs_linear_panels, (ptrdiff_t M))
DECLARE(ptrdiff_t, hs_linear_scratch_floats, (ptrdiff_t M))
DECLARE(void, hs_attention, (const float *q, ptrdiff_t ldq, const float *k, const float *v, ptrdiff_t ldkv,
                             ptrdiff_t Lq, ptrdiff_t Lk, ptrdiff_t d, float scale, float *o, ptrdiff_t ldo,
                             float *scratch))

static int isa_level(void) {
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        level = (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) ? 2
              : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
        // HOTSWAP_ISA=avx2|baseline caps the level, so the narrower kernels can be tested on this machine.
        const char *cap = getenv("HOTSWAP_ISA");
        if (cap && strcmp(cap, "avx2") == 0 && level > 1) level = 1;
        if (cap && strcmp(cap, "baseline") == 0) level = 0;
    }
    return level;
}

int hs_isa_level(void) { return isa_level(); }

#define DISPATCH(name, args) \
    switch (isa_level()) { case 2: name##_avx512 args; return; case 1: name##_avx2 args; return; default: name##_baseline args; return; }

#define DISPATCH_VALUE(name, args) \
    switch (isa_level()) { case 2: return name##_avx512 args; case 1: return name##_avx2 args; default: return name##_baseline args; }

void hs_exp(float *x, ptrdiff_t n) { DISPATCH(hs_exp, (x, n)) }
void hs_linear_pack_x(const float *x, ptrdiff_t ldx, ptrdiff_t M, ptrdiff_t K, float *xp, ptrdiff_t panel0, ptrdiff_t panel1) {
    DISPATCH(hs_linear_pack_x, (x, ldx, M, K, xp, panel0, panel1))
}
void hs_linear_product(const float *xp, ptrdiff_t M, ptrdiff_t K, const float *w, ptrdiff_t ldw, const float *bias,
                       float *y, ptrdiff_t ldy, ptrdiff_t n0, ptrdiff_t n1, float *scratch) {
    DISPATCH(hs_linear_product, (xp, M, K, w, ldw, bias, y, ldy, n0, n1, scratch))
}
ptrdiff_t hs_linear_packed_x_floats(ptrdiff_t M, ptrdiff_t K) { DISPATCH_VALUE(hs_linear_packed_x_floats, (M, K)) }
ptrdiff_t hs_linear_panels(ptrdiff_t M) { DISPATCH_VALUE(hs_linear_panels, (M)) }
ptrdiff_t hs_linear_scratch_floats(ptrdiff_t M) { DISPATCH_VALUE(hs_linear_scratch_floats, (M)) }
void hs_silu(float *x, ptrdiff_t n) { DISPATCH(hs_silu, (x, n)) }
void hs_lowrank_fuse(const float *base, const float *up, const float *down, float *out,
                     ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t rank, float scale, int streaming) {
    DISPATCH(hs_lowrank_fuse, (base, up, down, out, rows, cols, rank, scale, streaming))
}
void hs_quick_gelu(float *x, ptrdiff_t n) { DISPATCH(hs_quick_gelu, (x, n)) }
void hs_gelu(float *x, ptrdiff_t n) { DISPATCH(hs_gelu, (x, n)) }
void hs_gelu_tanh(float *x, ptrdiff_t n) { DISPATCH(hs_gelu_tanh, (x, n)) }
void hs_geglu(const float *x, float *y, ptrdiff_t rows, ptrdiff_t inner) { DISPATCH(hs_geglu, (x, y, rows, inner)) }
void hs_softmax_row(float *row, ptrdiff_t visible, ptrdiff_t count) { DISPATCH(hs_softmax_row, (row, visible, count)) }
void hs_group_norm(const float *x, float *y, ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t spatial,
                   ptrdiff_t groups, const float *gamma, const float *beta, float epsilon, int silu) {
    DISPATCH(hs_group_norm, (x, y, batch, channels, spatial, groups, gamma, beta, epsilon, silu))
}
void hs_layer_norm(const float *x, float *y, ptrdiff_t rows, ptrdiff_t columns,
                   const float *gamma, const float *beta, float epsilon) {
    DISPATCH(hs_layer_norm, (x, y, rows, columns, gamma, beta, epsilon))
}
void hs_winograd_f23_weights(const float *w, ptrdiff_t K, ptrdiff_t C, float *U) {
    DISPATCH(hs_winograd_f23_weights, (w, K, C, U))
}
void hs_winograd_f23_input(const float *src, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                           ptrdiff_t tileRow0, ptrdiff_t tileRows, float *V, ptrdiff_t xiStride, float *scratch) {
    DISPATCH(hs_winograd_f23_input, (src, C, H, W, tileRow0, tileRows, V, xiStride, scratch))
}
void hs_winograd_f23_output(const float *M, ptrdiff_t K, ptrdiff_t H, ptrdiff_t W, ptrdiff_t tileRow0,
                            ptrdiff_t tileRows, ptrdiff_t xiStride, const float *bias, float *dst, float *scratch) {
    DISPATCH(hs_winograd_f23_output, (M, K, H, W, tileRow0, tileRows, xiStride, bias, dst, scratch))
}

// Enough for every kernel (VW 16: keys padded to 32, channels to 16, 8-row score tile; AVX2's block of 72 rows).
ptrdiff_t hs_attention_scratch_floats(ptrdiff_t Lk, ptrdiff_t d) {
    const ptrdiff_t keys = (Lk + 31) / 32 * 32, padded = (d + 15) / 16 * 16;
    return keys * d + keys * padded + 8 * 256 + 72 * padded + 2 * 72;
}
void hs_attention(const float *q, ptrdiff_t ldq, const float *k, const float *v, ptrdiff_t ldkv,
                  ptrdiff_t Lq, ptrdiff_t Lk, ptrdiff_t d, float scale, float *o, ptrdiff_t ldo, float *scratch) {
    DISPATCH(hs_attention, (q, ldq, k, v, ldkv, Lq, Lk, d, scale, o, ldo, scratch))
}
void hs_winograd_f43_weights(const float *w, ptrdiff_t K, ptrdiff_t C, float *U) {
    DISPATCH(hs_winograd_f43_weights, (w, K, C, U))
}
void hs_winograd_f43_input(const float *src, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                           ptrdiff_t tileRow0, ptrdiff_t tileRows, float *V, ptrdiff_t xiStride, float *scratch) {
    DISPATCH(hs_winograd_f43_input, (src, C, H, W, tileRow0, tileRows, V, xiStride, scratch))
}
void hs_winograd_f43_output(const float *M, ptrdiff_t K, ptrdiff_t H, ptrdiff_t W, ptrdiff_t tileRow0,
                            ptrdiff_t tileRows, ptrdiff_t xiStride, const float *bias, float *dst, float *scratch) {
    DISPATCH(hs_winograd_f43_output, (M, K, H, W, tileRow0, tileRows, xiStride, bias, dst, scratch))
}
void hs_sgemm_few_columns(const float *w, ptrdiff_t ldw, const float *cols, ptrdiff_t ldc,
                          float *out, ptrdiff_t ldo, ptrdiff_t rows, ptrdiff_t K, ptrdiff_t P) {
    DISPATCH(hs_sgemm_few_columns, (w, ldw, cols, ldc, out, ldo, rows, K, P))
}
