// Fused (flash-style) attention for one head: O = softmax(Q K^T * scale) V without the score matrix.
// Keys are worked in blocks of ATT_BK with a running maximum and sum per query row (Dao et al. 2022,
// "FlashAttention"; on the CPU the same scheme as PyTorch's aten/src/ATen/native/cpu/FlashAttentionKernel.cpp),
// so a block of scores lives in L1 between the two products instead of a 4096 x 4096 matrix going
// through memory three times (sgemm, softmax, sgemm). Included by one .c file per instruction set,
// after kernels_impl.h (VW, ISA, INLINE, vexp).
//
// K is packed once per call into panels of ATT_KP keys, [panel][channel][ATT_KP], already multiplied
// by `scale`; V into rows of dp = d rounded up to ATT_DALIGN floats, zero-padded. Keys past Lk (the last
// panel's padding) get score -inf. Query rows go in blocks of ATT_QB, so one key block (K and V, ~90 kB
// at d = 40) is reused from cache by ATT_QB / ATT_R micro-tiles of ATT_R rows.

#define ATT_R (VW >= 16 ? 8 : VW == 8 ? 6 : 4)  // query rows per micro-tile (AVX2: 12 of 16 registers accumulate)
#define ATT_KP (2 * VW)            // keys per score micro-tile and per packed K panel
#define ATT_DV (VW >= 16 ? 3 : 2)  // output vectors per P V micro-tile
#define ATT_BK 256                 // keys per block (a multiple of ATT_KP)
#define ATT_QB (ATT_R == 6 ? 72 : 64)  // query rows per block (a multiple of ATT_R)
// Output channels are padded to whole vectors, except that 16-wide vectors may end in one 8-wide half
// (SD 1.x's 40-channel heads: 2.5 vectors; padding them to 48 was 20% more P V work).
#if VW >= 16
#define ATT_DALIGN (VW / 2)
typedef float vhalf __attribute__((vector_size(VW * 2)));
INLINE vhalf load_half(const float *p) { vhalf v; memcpy(&v, p, sizeof v); return v; }
INLINE void store_half(float *p, vhalf v) { memcpy(p, &v, sizeof v); }
INLINE vhalf splat_half(float s) { vhalf v; for (int i = 0; i < VW / 2; i++) v[i] = s; return v; }
#else
#define ATT_DALIGN VW
#endif

/// s[r][0 .. ATT_KP) = q_r . kpanel[:, 0 .. ATT_KP) for the ATT_R rows `qr`.
INLINE void att_scores(const float *const *qr, const float *kpanel, ptrdiff_t d, float *s, ptrdiff_t lds) {
    v16f a[ATT_R][2];
    for (int r = 0; r < ATT_R; r++) { a[r][0] = splat(0.0f); a[r][1] = splat(0.0f); }
    for (ptrdiff_t c = 0; c < d; c++) {
        const v16f k0 = load(kpanel + c * ATT_KP), k1 = load(kpanel + c * ATT_KP + VW);
        for (int r = 0; r < ATT_R; r++) {
            const v16f b = splat(qr[r][c]);
            a[r][0] = a[r][0] + b * k0;
            a[r][1] = a[r][1] + b * k1;
        }
    }
    for (int r = 0; r < ATT_R; r++) { store(s + r * lds, a[r][0]); store(s + r * lds + VW, a[r][1]); }
}

/// acc[r][0 .. w) += sum_j p[r][j] vp[j][0 .. w) over n keys, for ATT_R rows, w = nv * VW (+ VW / 2 with
/// `half`). nv <= ATT_DV and half are constants after inlining, so the accumulators stay in registers.
INLINE void att_pv(const float *p, ptrdiff_t ldp, ptrdiff_t n, const float *vp, ptrdiff_t dp,
                   float *acc, ptrdiff_t ldacc, const int nv, const int half) {
    v16f a[ATT_R][ATT_DV];
#if VW >= 16
    vhalf t[ATT_R];
    for (int r = 0; r < ATT_R; r++) t[r] = half ? load_half(acc + r * ldacc + nv * VW) : splat_half(0.0f);
#endif
    for (int r = 0; r < ATT_R; r++)
        for (int x = 0; x < nv; x++) a[r][x] = load(acc + r * ldacc + x * VW);
    for (ptrdiff_t j = 0; j < n; j++) {
        const float *row = vp + j * dp;
        v16f v[ATT_DV];
        for (int x = 0; x < nv; x++) v[x] = load(row + x * VW);
#if VW >= 16
        const vhalf tail = half ? load_half(row + nv * VW) : splat_half(0.0f);
#endif
        for (int r = 0; r < ATT_R; r++) {
            const float pr = p[r * ldp + j];
            const v16f b = splat(pr);
            for (int x = 0; x < nv; x++) a[r][x] = a[r][x] + b * v[x];
#if VW >= 16
            if (half) t[r] = t[r] + splat_half(pr) * tail;
#endif
        }
    }
    for (int r = 0; r < ATT_R; r++)
        for (int x = 0; x < nv; x++) store(acc + r * ldacc + x * VW, a[r][x]);
#if VW >= 16
    if (half)
        for (int r = 0; r < ATT_R; r++) store_half(acc + r * ldacc + nv * VW, t[r]);
#endif
}

/// Rows [0, Lq) of one head: q[i * ldq + c], k[j * ldkv + c], v[j * ldkv + c], o[i * ldo + c], c < d.
/// scratch: hs_attention_scratch_floats(Lk, d) floats.
void ISA(hs_attention)(const float *q, ptrdiff_t ldq, const float *k, const float *v, ptrdiff_t ldkv,
                       ptrdiff_t Lq, ptrdiff_t Lk, ptrdiff_t d, float scale, float *o, ptrdiff_t ldo,
                       float *scratch) {
    const ptrdiff_t Lkp = (Lk + ATT_KP - 1) / ATT_KP * ATT_KP, dp = (d + ATT_DALIGN - 1) / ATT_DALIGN * ATT_DALIGN;
    float *kp = scratch, *vp = kp + Lkp * d, *s = vp + Lkp * dp, *acc = s + ATT_R * ATT_BK;
    float *mx = acc + ATT_QB * dp, *sum = mx + ATT_QB;

    for (ptrdiff_t j = 0; j < Lkp; j++) {
        float *panel = kp + (j / ATT_KP) * d * ATT_KP + j % ATT_KP;
        float *vrow = vp + j * dp;
        for (ptrdiff_t c = 0; c < d; c++) {
            panel[c * ATT_KP] = j < Lk ? k[j * ldkv + c] * scale : 0.0f;
            vrow[c] = j < Lk ? v[j * ldkv + c] : 0.0f;
        }
        for (ptrdiff_t c = d; c < dp; c++) vrow[c] = 0.0f;
    }

    for (ptrdiff_t q0 = 0; q0 < Lq; q0 += ATT_QB) {
        const ptrdiff_t qRows = Lq - q0 < ATT_QB ? Lq - q0 : ATT_QB;
        for (ptrdiff_t r = 0; r < ATT_QB; r++) { mx[r] = -INFINITY; sum[r] = 0.0f; }
        for (ptrdiff_t i = 0; i < ATT_QB * dp; i++) acc[i] = 0.0f;

        for (ptrdiff_t j0 = 0; j0 < Lkp; j0 += ATT_BK) {
            const ptrdiff_t n = Lkp - j0 < ATT_BK ? Lkp - j0 : ATT_BK;  // a multiple of ATT_KP
            for (ptrdiff_t r0 = 0; r0 < qRows; r0 += ATT_R) {
                const ptrdiff_t rows = qRows - r0 < ATT_R ? qRows - r0 : ATT_R;
                // Rows past the end repeat the last real row (computed, never used), so the
                // micro-kernels always run ATT_R rows with constant trip counts.
                const float *qr[ATT_R];
                for (int r = 0; r < ATT_R; r++) qr[r] = q + (q0 + r0 + (r < rows ? r : rows - 1)) * ldq;
                for (ptrdiff_t p = 0; p < n; p += ATT_KP) att_scores(qr, kp + (j0 + p) * d, d, s + p, ATT_BK);
                for (ptrdiff_t r = 0; r < rows; r++) {
                    float *srow = s + r * ATT_BK;
                    for (ptrdiff_t j = Lk - j0; j < n; j++) srow[j] = -INFINITY;  // padding keys
                    v16f m16 = load(srow);
                    for (ptrdiff_t j = VW; j < n; j += VW) m16 = __builtin_elementwise_max(m16, load(srow + j));
                    const float blockMax = hmax(m16);
                    const float old = mx[r0 + r], next = old > blockMax ? old : blockMax;
                    const float rescale = old == -INFINITY ? 0.0f : expf(old - next);
                    const v16f shift = splat(next);
                    v16f sum16 = splat(0.0f);
                    for (ptrdiff_t j = 0; j < n; j += VW) {
                        const v16f e = vexp(load(srow + j) - shift);
                        store(srow + j, e);
                        sum16 += e;
                    }
                    mx[r0 + r] = next;
                    sum[r0 + r] = sum[r0 + r] * rescale + hsum(sum16);
                    if (rescale != 1.0f) {
                        float *arow = acc + (r0 + r) * dp;
                        const v16f f = splat(rescale);
                        ptrdiff_t c = 0;
                        for (; c + VW <= dp; c += VW) store(arow + c, load(arow + c) * f);
                        for (; c < dp; c++) arow[c] *= rescale;
                    }
                }
                // acc rows past `rows` belong to the next micro-tile or to nothing: the repeated
                // rows accumulate into the scratch tail (acc has ATT_QB rows and ATT_QB % ATT_R == 0).
                for (ptrdiff_t c0 = 0; c0 < dp; c0 += ATT_DV * VW) {
                    const ptrdiff_t left = (dp - c0) / VW;
                    const int half = (dp - c0) % VW != 0;  // only with 16-wide vectors: 8 more channels
                    const float *vblock = vp + j0 * dp + c0;
                    float *a = acc + r0 * dp + c0;
                    if (left >= ATT_DV) att_pv(s, ATT_BK, n, vblock, dp, a, dp, ATT_DV, 0);
                    else if (left == 2) half ? att_pv(s, ATT_BK, n, vblock, dp, a, dp, 2, 1) : att_pv(s, ATT_BK, n, vblock, dp, a, dp, 2, 0);
                    else if (left == 1) half ? att_pv(s, ATT_BK, n, vblock, dp, a, dp, 1, 1) : att_pv(s, ATT_BK, n, vblock, dp, a, dp, 1, 0);
                    else att_pv(s, ATT_BK, n, vblock, dp, a, dp, 0, 1);
                }
            }
        }
        for (ptrdiff_t r = 0; r < qRows; r++) {
            const float inverse = 1.0f / sum[r];
            const float *arow = acc + r * dp;
            float *orow = o + (q0 + r) * ldo;
            for (ptrdiff_t c = 0; c < d; c++) orow[c] = arow[c] * inverse;
        }
    }
}
