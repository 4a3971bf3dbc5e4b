// y = x w^T + bias for a torch Linear (w: [N, K], rows of K) with a few dozen to a few hundred rows
// of x: the text encoders' 77 or 154 tokens. Written once for a vector width VW and included by
// kernels_{avx512,avx2,baseline}.c after kernels_impl.h (v16f, load, store, splat, INLINE).
//
// OpenBLAS packs the weight for every call and synchronises its threads per block; at 77 or 154
// rows that overhead is a large part of the call (docs/PERFORMANCE.md). Here x is packed once into
// panels of LP_NR rows, then each thread owns a range of weight rows outright and runs 6 x LP_NR
// register tiles over blocks of them (LP_MC rows x LP_KC, prefetched into L2 one block ahead),
// straight from the weight's rows, over every x panel, with no synchronisation until the end. A tile accumulates one k block in registers (between blocks in a
// small scratch) and leaves through a transposing store: it holds 6 weight rows (output columns) x
// LP_NR rows of x.

#define LP_MR 6
#define LP_NR (2 * VW)
#define LP_KC 256
#define LP_MC 96

/// The 6 x LP_NR tile of weight rows x rows of x over one k block. Not last block: ot = (accumulate ? ot : 0) + tile.
/// Last block: y[m][n] = ot + tile + bias, for the `outputs` valid weight rows and `rows` valid x rows.
INLINE void ISA(linear_tile)(const float *w, ptrdiff_t ldw, const float *xp, ptrdiff_t kc, float *ot, ptrdiff_t ldot,
                             int accumulate, int last, float *y, ptrdiff_t ldy, ptrdiff_t outputs,
                             ptrdiff_t rows, const float *bias) {
    v16f acc[LP_MR][2];
    const float *wr[LP_MR];
    for (int r = 0; r < LP_MR; r++) {
        acc[r][0] = acc[r][1] = splat(0);
        // Rows past the weight's end repeat its last row: their outputs are computed and never stored.
        wr[r] = w + (r < outputs ? r : outputs - 1) * ldw;
    }
#pragma clang loop unroll_count(4)
    for (ptrdiff_t k = 0; k < kc; k++) {
        const v16f x0 = load(xp + LP_NR * k), x1 = load(xp + LP_NR * k + VW);
        for (int r = 0; r < LP_MR; r++) {
            const v16f s = splat(wr[r][k]);
            acc[r][0] += s * x0;
            acc[r][1] += s * x1;
        }
    }
    if (accumulate)
        for (int r = 0; r < LP_MR; r++) {
            acc[r][0] += load(ot + r * ldot);
            acc[r][1] += load(ot + r * ldot + VW);
        }
    if (!last) {
        for (int r = 0; r < LP_MR; r++) {
            store(ot + r * ldot, acc[r][0]);
            store(ot + r * ldot + VW, acc[r][1]);
        }
        return;
    }
    float tile[LP_MR][LP_NR];
    for (int r = 0; r < LP_MR; r++) {
        store(tile[r], acc[r][0]);
        store(tile[r] + VW, acc[r][1]);
    }
    for (ptrdiff_t m = 0; m < rows; m++)
        for (ptrdiff_t r = 0; r < outputs; r++) y[m * ldy + r] = tile[r][m] + (bias ? bias[r] : 0.0f);
}

/// Packs x panels [panel0, panel1): for each k block (offset pc * padded rows), panel j holds
/// [kc][LP_NR], rows past M zero.
CLONES void ISA(hs_linear_pack_x)(const float *x, ptrdiff_t ldx, ptrdiff_t M, ptrdiff_t K, float *xp,
                                  ptrdiff_t panel0, ptrdiff_t panel1) {
    const ptrdiff_t padded = (M + LP_NR - 1) / LP_NR * LP_NR;
    for (ptrdiff_t pc = 0; pc < K; pc += LP_KC) {
        const ptrdiff_t kc = K - pc < LP_KC ? K - pc : LP_KC;
        for (ptrdiff_t j = panel0; j < panel1; j++) {
            float *p = xp + pc * padded + j * kc * LP_NR;
            for (ptrdiff_t i = 0; i < LP_NR; i++) {
                const ptrdiff_t m = j * LP_NR + i;
                if (m < M) {
                    const float *src = x + m * ldx + pc;
                    for (ptrdiff_t k = 0; k < kc; k++) p[k * LP_NR + i] = src[k];
                } else {
                    for (ptrdiff_t k = 0; k < kc; k++) p[k * LP_NR + i] = 0.0f;
                }
            }
        }
    }
}

CLONES void ISA(hs_linear_product)(const float *xp, ptrdiff_t M, ptrdiff_t K, const float *w, ptrdiff_t ldw,
                                   const float *bias, float *y, ptrdiff_t ldy, ptrdiff_t n0, ptrdiff_t n1,
                                   float *scratch) {
    const ptrdiff_t panels = (M + LP_NR - 1) / LP_NR, padded = panels * LP_NR;
    float *ot = scratch;
    for (ptrdiff_t ic = n0; ic < n1; ic += LP_MC) {
        const ptrdiff_t mc = n1 - ic < LP_MC ? n1 - ic : LP_MC;
        for (ptrdiff_t pc = 0; pc < K; pc += LP_KC) {
            const ptrdiff_t kc = K - pc < LP_KC ? K - pc : LP_KC;
            const int last = pc + kc >= K;
            // The next weight block comes from memory (the weights are far larger than the caches):
            // its lines are requested while this block computes, spread over the x panels, so the
            // tiles read every block from L2 (the first x panel included) without copying it.
            ptrdiff_t next_ic = ic, next_pc = pc + LP_KC;
            if (next_pc >= K) { next_ic = ic + LP_MC; next_pc = 0; }
            const ptrdiff_t next_rows = next_ic < n1 ? (n1 - next_ic < LP_MC ? n1 - next_ic : LP_MC) : 0;
            const ptrdiff_t next_kc = K - next_pc < LP_KC ? K - next_pc : LP_KC;
            const ptrdiff_t lines_per_row = (next_kc + 15) / 16, lines = next_rows * lines_per_row;
            ptrdiff_t requested = 0, row = 0, line = 0;
            for (ptrdiff_t j = 0; j < panels; j++) {
                for (const ptrdiff_t until = lines * (j + 1) / panels; requested < until; requested++) {
                    __builtin_prefetch(w + (next_ic + row) * ldw + next_pc + line * 16, 0, 2);
                    if (++line == lines_per_row) { line = 0; row++; }
                }
                const float *x = xp + pc * padded + j * kc * LP_NR;
                const ptrdiff_t rows = M - j * LP_NR < LP_NR ? M - j * LP_NR : LP_NR;
                for (ptrdiff_t r0 = 0; r0 < mc; r0 += LP_MR) {
                    const ptrdiff_t outputs = mc - r0 < LP_MR ? mc - r0 : LP_MR;
                    ISA(linear_tile)(w + (ic + r0) * ldw + pc, ldw, x, kc, ot + r0 * padded + j * LP_NR, padded, pc > 0, last,
                                     y + j * LP_NR * ldy + ic + r0, ldy, outputs, rows,
                                     bias ? bias + ic + r0 : NULL);
                }
            }
        }
    }
}

/// Floats of x's packed panels (for M rows, K columns) and of one thread's scratch.
CLONES ptrdiff_t ISA(hs_linear_packed_x_floats)(ptrdiff_t M, ptrdiff_t K) { return (M + LP_NR - 1) / LP_NR * LP_NR * K; }
CLONES ptrdiff_t ISA(hs_linear_panels)(ptrdiff_t M) { return (M + LP_NR - 1) / LP_NR; }
CLONES ptrdiff_t ISA(hs_linear_scratch_floats)(ptrdiff_t M) {
    return LP_MC * ((M + LP_NR - 1) / LP_NR * LP_NR);
}

#undef LP_MR
#undef LP_NR
#undef LP_KC
#undef LP_MC
