// The kernels' implementation, written once for a vector width VW (floats per vector) and
// included by one .c file per instruction set (kernels_avx512.c, kernels_avx2.c,
// kernels_baseline.c), each defining VW and ISA(name) and compiling for its target.
#include "ckernels.h"
#include <math.h>
#include <string.h>
#include <stdint.h>

typedef float v16f __attribute__((vector_size(VW * 4)));
typedef int v16i __attribute__((vector_size(VW * 4)));
typedef double v8d __attribute__((vector_size(VW * 4)));

#define INLINE static inline __attribute__((always_inline))
#define CLONES

INLINE v16f load(const float *p) { v16f v; memcpy(&v, p, sizeof v); return v; }
INLINE void store(float *p, v16f v) { memcpy(p, &v, sizeof v); }
INLINE v16f splat(float s) {
    // Not (v16f){0} + s: 0 + (-0) is +0, and the sign mask needs -0.
    v16f v;
    for (int i = 0; i < VW; i++) v[i] = s;
    return v;
}
INLINE v16f select_lt(v16f a, v16f b, v16f if_true, v16f if_false) {
    v16i mask = a < b;
    return (v16f)((mask & (v16i)if_true) | (~mask & (v16i)if_false));
}

INLINE v16f vexp(v16f x) {
    v16f clamped = __builtin_elementwise_min(__builtin_elementwise_max(x, splat(-87.3f)), splat(88.3f));
    v16f n = __builtin_elementwise_floor(clamped * 1.44269504088896341f + 0.5f);
    v16f r = clamped - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    v16f p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    v16f e = p * (r * r) + r + 1.0f;
    v16i bits = (__builtin_convertvector(n, v16i) + 127) << 23;
    v16f result = e * (v16f)bits;
    return select_lt(x, splat(-87.3f), splat(0.0f), result);
}

/// PyTorch's Vectorized<float>::erf (aten/src/ATen/cpu/vec/vec512/vec512_float.h).
INLINE v16f verf(v16f x) {
    v16i sign_mask = (v16i)splat(-0.0f);
    v16i sign = (v16i)x & sign_mask;
    v16f abs_x = (v16f)((v16i)x & ~sign_mask);
    v16f t = 1.0f / (abs_x * 0.3275911f + 1.0f);
    v16f r = t * 1.061405429f + -1.453152027f;
    r = r * t + 1.421413741f;
    r = r * t + -0.284496736f;
    r = r * t + 0.254829592f;
    v16f tmp = r * t;
    v16f e = vexp(-(abs_x * abs_x));
    v16f y = 1.0f - tmp * e;
    return (v16f)((v16i)y ^ sign);
}

INLINE v16f vsilu(v16f v) { return v / (1.0f + vexp(-v)); }
INLINE v16f vquick(v16f v) { return v / (1.0f + vexp(v * -1.702f)); }
INLINE v16f vgelu(v16f v) { return 0.5f * v * (1.0f + verf(v * 0.70710678118654752f)); }
INLINE v16f vgelu_tanh(v16f v) {
    v16f u = 0.79788456080286535f * (v + 0.044715f * v * v * v);
    v16f t = 1.0f - 2.0f / (vexp(2.0f * u) + 1.0f);
    return 0.5f * v * (1.0f + t);
}

#define MAP_FUNCTION(name, op)                                           \
    CLONES void name(float *x, ptrdiff_t n) {                            \
        ptrdiff_t i = 0;                                                 \
        for (; i + VW <= n; i += VW) store(x + i, op(load(x + i)));      \
        if (i < n) {                                                     \
            float tail[VW] = {0};                                        \
            memcpy(tail, x + i, (size_t)(n - i) * sizeof(float));       \
            store(tail, op(load(tail)));                                 \
            memcpy(x + i, tail, (size_t)(n - i) * sizeof(float));       \
        }                                                                \
    }

MAP_FUNCTION(ISA(hs_exp), vexp)
/// out[r, c] = base[r, c] + scale * sum over k < rank of up[r, k] * down[k, c] (k ascending), for
/// rows x cols row-major matrices (leading dimension cols): a LoRA term fused onto a weight in one
/// pass. Tiles of 4 rows x 2 vectors keep 8 accumulators in registers and load each down vector
/// once per 4 rows; columns go in blocks whose down rows stay in L2. base may equal out.
/// `streaming`: the result will not be read soon (the last term of a fuse), so write it around the
/// cache where the rows are vector-aligned.
CLONES void ISA(hs_lowrank_fuse)(const float *base, const float *up, const float *down, float *out,
                                 ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t rank, float scale, int streaming) {
    const ptrdiff_t block = 1024;
    // Streaming (non-temporal) stores skip the read-for-ownership of every result line: a third
    // less memory traffic, and the swap is bound by it. They need vector-aligned rows.
    const int stream = streaming && ((uintptr_t)out % (VW * 4)) == 0 && cols % VW == 0;
    for (ptrdiff_t c0 = 0; c0 < cols; c0 += block) {
        const ptrdiff_t c1 = c0 + block < cols ? c0 + block : cols;
        for (ptrdiff_t r = 0; r < rows; r += 4) {
            const ptrdiff_t nr = rows - r < 4 ? rows - r : 4;
            const float *u[4];
            for (int i = 0; i < 4; i++) u[i] = up + (r + (i < nr ? i : 0)) * rank;
            ptrdiff_t c = c0;
            for (; c + 2 * VW <= c1; c += 2 * VW) {
                v16f a0 = splat(0), a1 = splat(0), a2 = splat(0), a3 = splat(0);
                v16f b0 = splat(0), b1 = splat(0), b2 = splat(0), b3 = splat(0);
                // The base lines the next 4 rows will read here, fetched while these rows compute:
                // measured +15% on streams of 1.3 GB (the hardware prefetcher stops at 4 kB pages).
                for (ptrdiff_t i = r + 4; i < r + 8 && i < rows; i++)
                    for (int off = 0; off < 2 * VW; off += 16) __builtin_prefetch(base + i * cols + c + off);
                for (ptrdiff_t k = 0; k < rank; k++) {
                    const v16f d0 = load(down + k * cols + c), d1 = load(down + k * cols + c + VW);
                    const v16f s0 = splat(u[0][k]), s1 = splat(u[1][k]), s2 = splat(u[2][k]), s3 = splat(u[3][k]);
                    a0 += s0 * d0; b0 += s0 * d1;
                    a1 += s1 * d0; b1 += s1 * d1;
                    a2 += s2 * d0; b2 += s2 * d1;
                    a3 += s3 * d0; b3 += s3 * d1;
                }
                const v16f sa[4] = {a0, a1, a2, a3}, sb[4] = {b0, b1, b2, b3};
                for (int i = 0; i < nr; i++) {
                    const ptrdiff_t at = (r + i) * cols + c;
                    const v16f ra = load(base + at) + sa[i] * scale, rb = load(base + at + VW) + sb[i] * scale;
                    if (stream) {
                        __builtin_nontemporal_store(ra, (v16f *)(out + at));
                        __builtin_nontemporal_store(rb, (v16f *)(out + at + VW));
                    } else {
                        store(out + at, ra);
                        store(out + at + VW, rb);
                    }
                }
            }
            for (; c < c1; c++) {
                for (int i = 0; i < nr; i++) {
                    float acc = 0;
                    for (ptrdiff_t k = 0; k < rank; k++) acc += u[i][k] * down[k * cols + c];
                    const ptrdiff_t at = (r + i) * cols + c;
                    out[at] = base[at] + acc * scale;
                }
            }
        }
    }
#if defined(__SSE__)
    if (stream) __builtin_ia32_sfence();  // the streamed lines visible before the caller reads them
#endif
}

MAP_FUNCTION(ISA(hs_silu), vsilu)
MAP_FUNCTION(ISA(hs_quick_gelu), vquick)
MAP_FUNCTION(ISA(hs_gelu), vgelu)
MAP_FUNCTION(ISA(hs_gelu_tanh), vgelu_tanh)

CLONES void ISA(hs_geglu)(const float *x, float *y, ptrdiff_t rows, ptrdiff_t inner) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *hidden = x + r * 2 * inner, *gate = hidden + inner;
        float *out = y + r * inner;
        ptrdiff_t i = 0;
        for (; i + VW <= inner; i += VW) store(out + i, load(hidden + i) * vgelu(load(gate + i)));
        for (; i < inner; i++) {
            float g = gate[i];
            out[i] = hidden[i] * 0.5f * g * (1.0f + erff(g * 0.70710678118654752f));
        }
    }
}

INLINE float hmax(v16f v) {
    float m = v[0];
    for (int i = 1; i < VW; i++) m = v[i] > m ? v[i] : m;
    return m;
}
INLINE float hsum(v16f v) {
    float s = 0;
    for (int i = 0; i < VW; i++) s += v[i];
    return s;
}

CLONES void ISA(hs_softmax_row)(float *row, ptrdiff_t visible, ptrdiff_t count) {
    ptrdiff_t i = 0;
    float maximum = -INFINITY;
    if (visible >= VW) {
        v16f m = load(row);
        for (i = VW; i + VW <= visible; i += VW) m = __builtin_elementwise_max(m, load(row + i));
        maximum = hmax(m);
    } else {
        i = 0;
    }
    for (; i < visible; i++) maximum = row[i] > maximum ? row[i] : maximum;
    v16f sum16 = splat(0.0f);
    v16f mx = splat(maximum);
    for (i = 0; i + VW <= visible; i += VW) {
        v16f e = vexp(load(row + i) - mx);
        store(row + i, e);
        sum16 += e;
    }
    float sum = hsum(sum16);
    if (i < visible) {
        float tail[VW];
        for (int j = 0; j < VW; j++) tail[j] = (i + j < visible) ? row[i + j] - maximum : -100.0f;
        v16f e = vexp(load(tail));
        for (ptrdiff_t j = 0; i + j < visible; j++) { row[i + j] = e[j]; sum += e[j]; }
    }
    v16f inverse = splat(1.0f / sum);
    for (i = 0; i + VW <= visible; i += VW) store(row + i, load(row + i) * inverse);
    for (; i < visible; i++) row[i] *= 1.0f / sum;
    for (i = visible; i < count; i++) row[i] = 0.0f;
}

/// Mean and 1/sqrt(var + eps) of n floats: two passes, accumulated in double.
INLINE void moments(const float *x, ptrdiff_t n, float epsilon, float *mean_out, float *inv_std_out) {
    v8d acc = {0};
    ptrdiff_t i = 0;
    for (; i + VW / 4 <= n; i += VW / 4) {
        v8d d;
        for (int j = 0; j < VW / 4; j++) d[j] = x[i + j];
        acc += d;
    }
    double sum = 0;
    for (int j = 0; j < VW / 4; j++) sum += acc[j];
    for (; i < n; i++) sum += x[i];
    double mean = sum / (double)n;
    v8d acc2 = {0};
    v8d m8 = (v8d){0} + mean;
    for (i = 0; i + VW / 4 <= n; i += VW / 4) {
        v8d d;
        for (int j = 0; j < VW / 4; j++) d[j] = x[i + j];
        d -= m8;
        acc2 += d * d;
    }
    double squares = 0;
    for (int j = 0; j < VW / 4; j++) squares += acc2[j];
    for (; i < n; i++) { double d = x[i] - mean; squares += d * d; }
    *mean_out = (float)mean;
    *inv_std_out = (float)(1.0 / sqrt(squares / (double)n + (double)epsilon));
}

INLINE void affine_row(const float *src, float *dst, ptrdiff_t n, float a, float b, int silu) {
    v16f va = splat(a), vb = splat(b);
    ptrdiff_t i = 0;
    for (; i + VW <= n; i += VW) {
        v16f v = load(src + i) * va + vb;
        store(dst + i, silu ? vsilu(v) : v);
    }
    for (; i < n; i++) {
        float v = src[i] * a + b;
        dst[i] = silu ? v / (1.0f + expf(-v)) : v;
    }
}

CLONES void ISA(hs_group_norm)(const float *x, float *y, ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t spatial,
                          ptrdiff_t groups, const float *gamma, const float *beta, float epsilon, int silu) {
    ptrdiff_t per_group = channels / groups;
    for (ptrdiff_t b = 0; b < batch; b++) {
        for (ptrdiff_t g = 0; g < groups; g++) {
            ptrdiff_t offset = (b * channels + g * per_group) * spatial;
            float mean, inv_std;
            moments(x + offset, per_group * spatial, epsilon, &mean, &inv_std);
            for (ptrdiff_t c = 0; c < per_group; c++) {
                ptrdiff_t channel = g * per_group + c;
                float a = inv_std * gamma[channel];
                float shift = beta[channel] - mean * a;
                affine_row(x + offset + c * spatial, y + offset + c * spatial, spatial, a, shift, silu);
            }
        }
    }
}

CLONES void ISA(hs_layer_norm)(const float *x, float *y, ptrdiff_t rows, ptrdiff_t columns,
                          const float *gamma, const float *beta, float epsilon) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *src = x + r * columns;
        float *dst = y + r * columns;
        float mean, inv_std;
        moments(src, columns, epsilon, &mean, &inv_std);
        ptrdiff_t i = 0;
        v16f vm = splat(mean), vs = splat(inv_std);
        for (; i + VW <= columns; i += VW)
            store(dst + i, (load(src + i) - vm) * vs * load(gamma + i) + load(beta + i));
        for (; i < columns; i++) dst[i] = (src[i] - mean) * inv_std * gamma[i] + beta[i];
    }
}
