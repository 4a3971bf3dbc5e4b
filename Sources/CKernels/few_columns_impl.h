// out = w x cols for a product with few columns (the convolutions of a 4x4 or 8x4 feature map),
// written once for a vector width VW and included by kernels_{avx512,avx2,baseline}.c after
// kernels_impl.h (which defines v16f, load, store, splat, INLINE).
//
// OpenBLAS packs both operands for every call and is tuned for wide products: with 16 columns
// it runs [1280 x 11520] x [11520 x 16] at 35-66 GFLOPS on 2 Zen 3 cores, either orientation.
// Here the weight is read once, straight from its rows, and each tile keeps R rows x V vectors
// of the output in registers: 75-87 GFLOPS on the same shapes (docs/PERFORMANCE.md).

/// R weight rows x V column vectors over k in [0, kn): out tile = (first ? 0 : out) + w x cols.
INLINE void ISA(few_columns_tile)(const int R, const int V, const float *w, ptrdiff_t ldw,
                                  const float *cols, ptrdiff_t ldc, ptrdiff_t kn,
                                  float *out, ptrdiff_t ldo, ptrdiff_t p0, ptrdiff_t P, int first) {
    v16f acc[12][2];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++) acc[r][v] = splat(0);
    for (ptrdiff_t k = 0; k < kn; k++) {
        v16f c[2];
        for (int v = 0; v < V; v++) c[v] = load(cols + k * ldc + p0 + v * VW);
        for (int r = 0; r < R; r++) {
            const v16f s = splat(w[r * ldw + k]);
            for (int v = 0; v < V; v++) acc[r][v] += s * c[v];
        }
    }
    for (int r = 0; r < R; r++) {
        for (int v = 0; v < V; v++) {
            const ptrdiff_t p = p0 + v * VW;
            float *o = out + r * ldo + p;
            if (p + VW <= P) {
                store(o, first ? acc[r][v] : load(o) + acc[r][v]);
            } else if (p < P) {
                float lanes[VW];
                store(lanes, acc[r][v]);
                for (ptrdiff_t i = 0; p + i < P; i++) o[i] = first ? lanes[i] : o[i] + lanes[i];
            }
        }
    }
}

CLONES void ISA(hs_sgemm_few_columns)(const float *w, ptrdiff_t ldw, const float *cols, ptrdiff_t ldc,
                                      float *out, ptrdiff_t ldo, ptrdiff_t rows, ptrdiff_t K, ptrdiff_t P) {
    const ptrdiff_t vectors = (P + VW - 1) / VW;
    // A k block of cols (~64 KB) stays in L2 while every row tile passes over it.
    ptrdiff_t kb = 16384 / (ldc > 0 ? ldc : 1);
    if (kb < 64) kb = 64;
    for (ptrdiff_t k0 = 0; k0 < K; k0 += kb) {
        const ptrdiff_t kn = K - k0 < kb ? K - k0 : kb;
        const int first = k0 == 0;
        // Column blocks of two vectors: 12 accumulators (6 rows) or, for one vector, 12 rows.
        for (ptrdiff_t v0 = 0; v0 < vectors; v0 += 2) {
            const int V = vectors - v0 < 2 ? 1 : 2;
            ptrdiff_t o = 0;
#define FEW_COLUMNS_TILE(RR, VV) ISA(few_columns_tile)(RR, VV, w + o * ldw + k0, ldw, cols + k0 * ldc, ldc, kn, \
                                                      out + o * ldo, ldo, v0 * VW, P, first)
            if (V == 1) {
                for (; o + 12 <= rows; o += 12) FEW_COLUMNS_TILE(12, 1);
                for (; o < rows; o++) FEW_COLUMNS_TILE(1, 1);
            } else {
                for (; o + 6 <= rows; o += 6) FEW_COLUMNS_TILE(6, 2);
                for (; o < rows; o++) FEW_COLUMNS_TILE(1, 2);
            }
#undef FEW_COLUMNS_TILE
        }
    }
}
