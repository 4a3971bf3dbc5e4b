// Winograd F(2x2, 3x3) transforms for stride-1, padding-1 3x3 convolutions (Lavin & Gray 2015,
// "Fast Algorithms for Convolutional Neural Networks"): each 2x2 output tile costs 16 multiplies
// per (input, output) channel pair instead of 36, and the multiplies become 16 independent sgemms
// M[xi] = U[xi] V[xi] (K x C times C x tiles). Included by one .c file per instruction set, after
// kernels_impl.h (ISA, INLINE). Plain loops over tiles: clang vectorizes them for the file's target.
//
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   V = B^T d B  (d: 4x4 input patch)
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]  U = G g G^T (g: 3x3 kernel)
//   A^T = [1 1 1 0; 0 1 -1 -1]                       Y = A^T (U .* V) A (2x2 output)

void ISA(hs_winograd_f23_weights)(const float *w, ptrdiff_t K, ptrdiff_t C, float *U) {
    const ptrdiff_t plane = K * C;
    for (ptrdiff_t k = 0; k < K; k++) {
        for (ptrdiff_t c = 0; c < C; c++) {
            const float *g = w + (k * C + c) * 9;
            float t[4][3];  // G g
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[j];
                t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; i++) {  // (G g) G^T
                float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
                for (int j = 0; j < 4; j++) U[(i * 4 + j) * plane + k * C + c] = u[j];
            }
        }
    }
}

// One input row y (zero outside the image) split into even[i] = x[2i - 1] and odd[i] = x[2i],
// i in [0, tilesW]: tile tx reads columns 2tx-1 .. 2tx+2 = even[tx], odd[tx], even[tx+1], odd[tx+1].
INLINE void split_row(const float *src, ptrdiff_t H, ptrdiff_t W, ptrdiff_t y, ptrdiff_t tilesW,
                      float *restrict even, float *restrict odd) {
    if (y < 0 || y >= H) {
        for (ptrdiff_t i = 0; i <= tilesW; i++) { even[i] = 0; odd[i] = 0; }
        return;
    }
    const float *row = src + y * W;
    even[0] = 0;
    for (ptrdiff_t i = 1; i <= tilesW; i++) even[i] = (2 * i - 1 < W) ? row[2 * i - 1] : 0;
    for (ptrdiff_t i = 0; i <= tilesW; i++) odd[i] = (2 * i < W) ? row[2 * i] : 0;
}

void ISA(hs_winograd_f23_input)(const float *src, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                ptrdiff_t tileRow0, ptrdiff_t tileRows, float *V, ptrdiff_t xiStride, float *scratch) {
    const ptrdiff_t tilesW = (W + 1) / 2;
    const ptrdiff_t ld = tileRows * tilesW;  // V[xi][c][p]
    const ptrdiff_t span = tilesW + 1;
    float *e[4], *o[4];
    for (int r = 0; r < 4; r++) { e[r] = scratch + 2 * r * span; o[r] = e[r] + span; }
    for (ptrdiff_t c = 0; c < C; c++) {
        const float *plane = src + c * H * W;
        for (ptrdiff_t ty = 0; ty < tileRows; ty++) {
            const ptrdiff_t y0 = 2 * (tileRow0 + ty) - 1;
            for (int r = 0; r < 4; r++) split_row(plane, H, W, y0 + r, tilesW, e[r], o[r]);
            float *out = V + c * ld + ty * tilesW;
            const float *restrict e0 = e[0], *restrict e1 = e[1], *restrict e2 = e[2], *restrict e3 = e[3];
            const float *restrict o0 = o[0], *restrict o1 = o[1], *restrict o2 = o[2], *restrict o3 = o[3];
            for (ptrdiff_t tx = 0; tx < tilesW; tx++) {
                // d B per row r: (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
                float a0 = e0[tx] - e0[tx + 1], a1 = o0[tx] + e0[tx + 1], a2 = e0[tx + 1] - o0[tx], a3 = o0[tx] - o0[tx + 1];
                float b0 = e1[tx] - e1[tx + 1], b1 = o1[tx] + e1[tx + 1], b2 = e1[tx + 1] - o1[tx], b3 = o1[tx] - o1[tx + 1];
                float c0 = e2[tx] - e2[tx + 1], c1 = o2[tx] + e2[tx + 1], c2 = e2[tx + 1] - o2[tx], c3 = o2[tx] - o2[tx + 1];
                float d0 = e3[tx] - e3[tx + 1], d1 = o3[tx] + e3[tx + 1], d2 = e3[tx + 1] - o3[tx], d3 = o3[tx] - o3[tx + 1];
                // B^T (d B) over the rows a, b, c, d
                out[0 * xiStride + tx] = a0 - c0;  out[1 * xiStride + tx] = a1 - c1;
                out[2 * xiStride + tx] = a2 - c2;  out[3 * xiStride + tx] = a3 - c3;
                out[4 * xiStride + tx] = b0 + c0;  out[5 * xiStride + tx] = b1 + c1;
                out[6 * xiStride + tx] = b2 + c2;  out[7 * xiStride + tx] = b3 + c3;
                out[8 * xiStride + tx] = c0 - b0;  out[9 * xiStride + tx] = c1 - b1;
                out[10 * xiStride + tx] = c2 - b2; out[11 * xiStride + tx] = c3 - b3;
                out[12 * xiStride + tx] = b0 - d0; out[13 * xiStride + tx] = b1 - d1;
                out[14 * xiStride + tx] = b2 - d2; out[15 * xiStride + tx] = b3 - d3;
            }
        }
    }
}

void ISA(hs_winograd_f23_output)(const float *M, ptrdiff_t K, ptrdiff_t H, ptrdiff_t W,
                                 ptrdiff_t tileRow0, ptrdiff_t tileRows, ptrdiff_t xiStride, const float *bias,
                                 float *dst, float *scratch) {
    const ptrdiff_t tilesW = (W + 1) / 2;
    const ptrdiff_t ld = tileRows * tilesW;  // M[xi][k][p]
    float *restrict y00 = scratch, *restrict y01 = y00 + tilesW, *restrict y10 = y01 + tilesW, *restrict y11 = y10 + tilesW;
    for (ptrdiff_t k = 0; k < K; k++) {
        const float b = bias ? bias[k] : 0.0f;
        for (ptrdiff_t ty = 0; ty < tileRows; ty++) {
            const float *m = M + k * ld + ty * tilesW;
            for (ptrdiff_t tx = 0; tx < tilesW; tx++) {
                float s[4], d[4];
                for (int j = 0; j < 4; j++) {
                    const float m0 = m[j * xiStride + tx], m1 = m[(4 + j) * xiStride + tx];
                    const float m2 = m[(8 + j) * xiStride + tx], m3 = m[(12 + j) * xiStride + tx];
                    s[j] = m0 + m1 + m2;
                    d[j] = m1 - m2 - m3;
                }
                y00[tx] = s[0] + s[1] + s[2] + b; y01[tx] = s[1] - s[2] - s[3] + b;
                y10[tx] = d[0] + d[1] + d[2] + b; y11[tx] = d[1] - d[2] - d[3] + b;
            }
            const ptrdiff_t y = 2 * (tileRow0 + ty);
            float *row0 = dst + (k * H + y) * W;
            const ptrdiff_t pairs = W / 2;
            for (ptrdiff_t tx = 0; tx < pairs; tx++) { row0[2 * tx] = y00[tx]; row0[2 * tx + 1] = y01[tx]; }
            if (W & 1) row0[W - 1] = y00[pairs];
            if (y + 1 < H) {
                float *row1 = row0 + W;
                for (ptrdiff_t tx = 0; tx < pairs; tx++) { row1[2 * tx] = y10[tx]; row1[2 * tx + 1] = y11[tx]; }
                if (W & 1) row1[W - 1] = y10[pairs];
            }
        }
    }
}

// Winograd F(4x4, 3x3): 6x6 input tiles, 36 multiplies per 4x4 output tile and channel pair (2.25
// per output instead of F(2x2)'s 4), for the largest maps, where the 36 products still have enough
// tiles each. Interpolation points 0, +-1, +-2, infinity (Lavin & Gray 2015, section 4.2):
//
//   B^T = [4  0 -5  0 1 0;  0 -4 -4  1 1 0;  0 4 -4 -1 1 0;  0 -2 -1 2 1 0;  0 2 -1 -2 1 0;  0 4 0 -5 0 1]
//   G   = [1/4 0 0;  -1/6 -1/6 -1/6;  -1/6 1/6 -1/6;  1/24 1/12 1/6;  1/24 -1/12 1/6;  0 0 1]
//   A^T = [1 1 1 1 1 0;  0 1 -1 2 -2 0;  0 1 1 4 4 0;  0 1 -1 8 -8 1]
//
// The transforms are plain scalar code per tile: per channel pair they are ~1/K of the products' work.

INLINE void f43_bt(const float d[6], float o[6]) {  // o = B^T d
    o[0] = 4 * d[0] - 5 * d[2] + d[4];
    o[1] = -4 * (d[1] + d[2]) + d[3] + d[4];
    o[2] = 4 * (d[1] - d[2]) - d[3] + d[4];
    o[3] = -2 * (d[1] - d[3]) - d[2] + d[4];
    o[4] = 2 * (d[1] - d[3]) - d[2] + d[4];
    o[5] = 4 * d[1] - 5 * d[3] + d[5];
}

INLINE void f43_g(const float g[3], float o[6]) {  // o = G g
    o[0] = g[0] / 4;
    o[1] = -(g[0] + g[1] + g[2]) / 6;
    o[2] = -(g[0] - g[1] + g[2]) / 6;
    o[3] = g[0] / 24 + g[1] / 12 + g[2] / 6;
    o[4] = g[0] / 24 - g[1] / 12 + g[2] / 6;
    o[5] = g[2];
}

INLINE void f43_at(const float m[6], float o[4]) {  // o = A^T m
    const float a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
    o[0] = m[0] + a + c;
    o[1] = b + 2 * d;
    o[2] = a + 4 * c;
    o[3] = b + 8 * d + m[5];
}

void ISA(hs_winograd_f43_weights)(const float *w, ptrdiff_t K, ptrdiff_t C, float *U) {
    const ptrdiff_t plane = K * C;
    for (ptrdiff_t k = 0; k < K; k++) {
        for (ptrdiff_t c = 0; c < C; c++) {
            const float *g = w + (k * C + c) * 9;
            float t[3][6];  // columns of G g: t[j] = G (column j of g)
            for (int j = 0; j < 3; j++) {
                const float col[3] = {g[j], g[3 + j], g[6 + j]};
                f43_g(col, t[j]);
            }
            for (int i = 0; i < 6; i++) {  // row i of (G g) G^T = G (row i of G g)
                const float row[3] = {t[0][i], t[1][i], t[2][i]};
                float u[6];
                f43_g(row, u);
                for (int j = 0; j < 6; j++) U[(i * 6 + j) * plane + k * C + c] = u[j];
            }
        }
    }
}

/// scratch: 6 * (4 * tilesW + 2) floats (six zero-padded input rows).
void ISA(hs_winograd_f43_input)(const float *src, ptrdiff_t C, ptrdiff_t H, ptrdiff_t W,
                                ptrdiff_t tileRow0, ptrdiff_t tileRows, float *V, ptrdiff_t xiStride, float *scratch) {
    const ptrdiff_t tilesW = (W + 3) / 4;
    const ptrdiff_t ld = tileRows * tilesW;  // V[xi][c][p]
    const ptrdiff_t span = 4 * tilesW + 2;   // columns -1 .. 4 tilesW
    for (ptrdiff_t c = 0; c < C; c++) {
        const float *plane = src + c * H * W;
        for (ptrdiff_t ty = 0; ty < tileRows; ty++) {
            const ptrdiff_t y0 = 4 * (tileRow0 + ty) - 1;
            for (int r = 0; r < 6; r++) {
                float *row = scratch + r * span;  // row[x + 1] = input[y0 + r][x], zero outside
                const ptrdiff_t y = y0 + r;
                for (ptrdiff_t x = 0; x < span; x++) row[x] = 0.0f;
                if (y >= 0 && y < H) memcpy(row + 1, plane + y * W, (size_t)W * sizeof(float));
            }
            float *out = V + c * ld + ty * tilesW;
            for (ptrdiff_t tx = 0; tx < tilesW; tx++) {
                float t[6][6];  // t[j] = B^T (column j of the patch)
                for (int j = 0; j < 6; j++) {
                    float col[6];
                    for (int r = 0; r < 6; r++) col[r] = scratch[r * span + 4 * tx + j];
                    f43_bt(col, t[j]);
                }
                for (int i = 0; i < 6; i++) {  // row i of (B^T d) B = B^T (row i of B^T d)
                    const float row[6] = {t[0][i], t[1][i], t[2][i], t[3][i], t[4][i], t[5][i]};
                    float v[6];
                    f43_bt(row, v);
                    for (int j = 0; j < 6; j++) out[(i * 6 + j) * xiStride + tx] = v[j];
                }
            }
        }
    }
}

/// scratch: 4 * 4 * tilesW floats (four output rows).
void ISA(hs_winograd_f43_output)(const float *M, ptrdiff_t K, ptrdiff_t H, ptrdiff_t W,
                                 ptrdiff_t tileRow0, ptrdiff_t tileRows, ptrdiff_t xiStride, const float *bias,
                                 float *dst, float *scratch) {
    const ptrdiff_t tilesW = (W + 3) / 4;
    const ptrdiff_t ld = tileRows * tilesW;  // M[xi][k][p]
    const ptrdiff_t rowLength = 4 * tilesW;
    for (ptrdiff_t k = 0; k < K; k++) {
        const float b = bias ? bias[k] : 0.0f;
        for (ptrdiff_t ty = 0; ty < tileRows; ty++) {
            const float *m = M + k * ld + ty * tilesW;
            for (ptrdiff_t tx = 0; tx < tilesW; tx++) {
                float t[6][4];  // t[j] = A^T (column j of m)
                for (int j = 0; j < 6; j++) {
                    float col[6];
                    for (int i = 0; i < 6; i++) col[i] = m[(i * 6 + j) * xiStride + tx];
                    f43_at(col, t[j]);
                }
                for (int i = 0; i < 4; i++) {  // row i of (A^T m) A = A^T (row i of A^T m)
                    const float row[6] = {t[0][i], t[1][i], t[2][i], t[3][i], t[4][i], t[5][i]};
                    float y[4];
                    f43_at(row, y);
                    for (int j = 0; j < 4; j++) scratch[i * rowLength + 4 * tx + j] = y[j] + b;
                }
            }
            const ptrdiff_t y0 = 4 * (tileRow0 + ty);
            for (int i = 0; i < 4 && y0 + i < H; i++)
                memcpy(dst + (k * H + y0 + i) * W, scratch + i * rowLength, (size_t)W * sizeof(float));
        }
    }
}
