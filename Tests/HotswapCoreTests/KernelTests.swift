import Foundation
import HotswapTestSupport
import Testing
@testable import HotswapCore

/// Kernels against naive loop implementations written here from torch's definitions.
/// Tolerance: relative 1e-5 (float32 sgemm vs straightforward summation).
@Suite struct KernelTests {
    func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var state = seed &+ 0x9E3779B97F4A7C15
        let values = (0..<Tensor.elementCount(shape)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
        return Tensor(shape: shape, values: values)
    }

    func naiveConv(_ x: Tensor, _ w: Tensor, _ bias: Tensor, stride: Int, padding: Int) -> [Float] {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let oh = (h + 2 * padding - kh) / stride + 1, ow = (wd + 2 * padding - kw) / stride + 1
        var out = [Float](repeating: 0, count: n * o * oh * ow)
        for b in 0..<n { for oc in 0..<o { for y in 0..<oh { for xx in 0..<ow {
            var s = Double(bias.data[oc])
            for ic in 0..<c { for i in 0..<kh { for j in 0..<kw {
                let iy = y * stride - padding + i, ix = xx * stride - padding + j
                if iy >= 0 && iy < h && ix >= 0 && ix < wd {
                    s += Double(x.data[((b * c + ic) * h + iy) * wd + ix]) * Double(w.data[((oc * c + ic) * kh + i) * kw + j])
                }
            }}}
            out[((b * o + oc) * oh + y) * ow + xx] = Float(s)
        }}}}
        return out
    }

    @Test(arguments: [(3, 1, 1), (3, 2, 1), (1, 1, 0), (3, 2, 0)])
    func conv2d(kernel: Int, stride: Int, padding: Int) {
        let x = random([2, 5, 9, 7], seed: 1)
        let w = random([6, 5, kernel, kernel], seed: 2)
        let b = random([6], seed: 3)
        let shape = Conv2dShape(inChannels: 5, outChannels: 6, kernelHeight: kernel, kernelWidth: kernel,
                                stride: stride, padding: padding)
        var tuning = Tuning.current
        tuning.convolutionMaxColumnFloats = 5 * kernel * kernel * 8  // force several bands
        let y = Tuning.$current.withValue(tuning) { Convolution.conv2d(x, weight: w, bias: b, shape: shape) }
        expectClose(y.scalars, naiveConv(x, w, b, stride: stride, padding: padding), rtol: 1e-5)
    }

    /// A batch whose columns fit the budget together: one product for the whole batch
    /// (stride 1 and 2, so the strided unfold writes at the batch's row stride too).
    @Test(arguments: [1, 2])
    func conv2dBatchedColumns(stride: Int) {
        let x = random([3, 16, 12, 10], seed: 31)
        let w = random([7, 16, 3, 3], seed: 32)
        let b = random([7], seed: 33)
        let shape = Conv2dShape(inChannels: 16, outChannels: 7, kernelHeight: 3, kernelWidth: 3, stride: stride, padding: 1)
        let y = Convolution.conv2d(x, weight: w, bias: b, shape: shape)
        expectClose(y.scalars, naiveConv(x, w, b, stride: stride, padding: 1), rtol: 1e-5)
    }

    /// BLAS.sgemm against a plain loop, across its one-sgemv-per-row path (m <= 4) and plain sgemm
    /// (m = 5): B transposed or not, alpha and beta, padded leading dimensions, and beta 0 over a
    /// C full of NaN (which must not leak into the result).
    @Test(arguments: [1, 2, 4, 5], [false, true])
    func sgemmMatchesAPlainLoop(m: Int, transB: Bool) {
        let (n, k, lda, ldc) = (37, 53, 60, 40)
        let ldb = transB ? k + 2 : n + 3
        let a = random([m, lda], seed: 61), b = random([transB ? n : k, ldb], seed: 62)
        for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1)] {
            let c = random([m, ldc], seed: 63)
            if beta == 0 { for i in 0..<c.count { c.data[i] = .nan } }
            var expected = c.scalars
            for i in 0..<m { for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Double(a.data[i * lda + p]) * Double(transB ? b.data[j * ldb + p] : b.data[p * ldb + j]) }
                expected[i * ldc + j] = Float(Double(alpha) * s) + (beta == 0 ? 0 : beta * c.data[i * ldc + j])
            }}
            BLAS.sgemm(transB: transB, m: m, n: n, k: k, alpha: alpha, a: a.data, lda: lda, b: b.data, ldb: ldb,
                       beta: beta, c: c.data, ldc: ldc)
            for i in 0..<m {
                expectClose(Array(c.scalars[(i * ldc)..<(i * ldc + n)]), Array(expected[(i * ldc)..<(i * ldc + n)]), rtol: 1e-5)
            }
        }
    }

    /// Every product path of a convolution (weight x columns, transposed, hs_sgemm_few_columns),
    /// each forced by its tuning: one image and a batch (one product for both), 3x3 at stride 1
    /// and 2, 1x1; positions off the vector width, output channels off the 12-row tile and under it.
    @Test(arguments: [(1, 3, 1, 1), (2, 3, 1, 1), (1, 3, 2, 1), (2, 3, 2, 1), (1, 1, 1, 0), (2, 1, 1, 0)],
          [(0, 0), (1 << 20, 0), (0, 1 << 20)])
    func conv2dProductPaths(layer: (batch: Int, kernel: Int, stride: Int, padding: Int),
                            limits: (transposed: Int, fewColumns: Int)) {
        for (outChannels, height, width) in [(29, 5, 3), (7, 4, 4), (40, 6, 7)] {
            let x = random([layer.batch, 9, height, width], seed: 41)
            let w = random([outChannels, 9, layer.kernel, layer.kernel], seed: 42)
            let b = random([outChannels], seed: 43)
            let shape = Conv2dShape(inChannels: 9, outChannels: outChannels, kernelHeight: layer.kernel,
                                    kernelWidth: layer.kernel, stride: layer.stride, padding: layer.padding)
            var tuning = Tuning.current
            tuning.convolutionTransposedMaxPositions = limits.transposed
            tuning.convolutionFewColumnsMaxPositions = limits.fewColumns
            let y = Tuning.$current.withValue(tuning) { Convolution.conv2d(x, weight: w, bias: b, shape: shape) }
            expectClose(y.scalars, naiveConv(x, w, b, stride: layer.stride, padding: layer.padding), rtol: 1e-5)
        }
    }

    /// hs_linear_product (forced for every row count) and the OpenBLAS path against a plain loop:
    /// rows off the x panel, outputs off the 6-row tile and the 96-row block, split over threads,
    /// reductions below, at and past the 256-column k block; with and without bias, into a buffer
    /// of NaN (every output must be written, none beyond).
    @Test(arguments: [(1, 1, 1, true), (17, 300, 13, false), (77, 513, 97, true), (154, 768, 200, true),
                      (33, 256, 6, false), (5, 1000, 1, true), (64, 40, 193, true)])
    func linearProductMatchesAPlainLoop(rows: Int, inFeatures: Int, outFeatures: Int, withBias: Bool) {
        let x = random([rows, inFeatures], seed: 61), w = random([outFeatures, inFeatures], seed: 62)
        let bias = withBias ? random([outFeatures], seed: 63) : nil
        var expected = [Float](repeating: 0, count: rows * outFeatures)
        for m in 0..<rows { for n in 0..<outFeatures {
            var s = Double(bias?.data[n] ?? 0)
            for k in 0..<inFeatures { s += Double(x.data[m * inFeatures + k]) * Double(w.data[n * inFeatures + k]) }
            expected[m * outFeatures + n] = Float(s)
        }}
        for kernelRows in [1...Int.max, nil] as [ClosedRange<Int>?] {
            var tuning = Tuning.current
            tuning.linearKernelRows = kernelRows
            let y = Tensor(shape: [rows * outFeatures + 1], values: [Float](repeating: .nan, count: rows * outFeatures + 1))
            Tuning.$current.withValue(tuning) {
                LinearProduct.compute(x: x.data, rows: rows, inFeatures: inFeatures, weight: w.data,
                                      outFeatures: outFeatures, bias: bias?.data, into: y.data)
            }
            expectClose(Array(y.scalars.prefix(rows * outFeatures)), expected, rtol: 1e-5)
            #expect(y.scalars.last!.isNaN, "wrote past the output")
        }
    }

    /// hs_sgemm_few_columns itself, called directly (so the baseline instantiation is covered too
    /// under HOTSWAP_ISA=baseline): NaN in the padding lanes must not reach the result.
    @Test(arguments: [(1, 1, 1), (12, 37, 16), (29, 300, 5), (25, 1100, 33), (13, 70, 32)])
    func fewColumnsProductMatchesAPlainLoop(rows: Int, reduction: Int, positions: Int) {
        let stride = Convolution.fewColumnsStride(positions)
        let w = random([rows, reduction], seed: 51), columns = random([reduction, stride], seed: 52)
        for k in 0..<reduction { for p in positions..<stride { columns.data[k * stride + p] = .nan } }
        var expected = [Float](repeating: 0, count: rows * positions)
        for o in 0..<rows { for p in 0..<positions {
            var s = 0.0
            for k in 0..<reduction { s += Double(w.data[o * reduction + k]) * Double(columns.data[k * stride + p]) }
            expected[o * positions + p] = Float(s)
        }}
        let out = Tensor(zeros: [rows, positions])
        Convolution.multiplyFewColumns(weight: w.data, columns: columns.data, columnStride: stride, outChannels: rows,
                                       reduction: reduction, positions: positions, into: out.data)
        expectClose(out.scalars, expected, rtol: 1e-5)
    }

    /// Large enough for the unfold to be split across workers.
    /// The LoRA fuse kernel against a plain loop: row counts off the 4-row tile, columns off the
    /// vector width and past the 1024-column block, in place (base == out) and not, streamed or not.
    @Test(arguments: [(1, 1, 1), (5, 37, 8), (4, 1040, 16), (7, 2051, 3), (9, 64, 32), (6, 640, 16)])
    func lowRankFuseMatchesAPlainLoop(rows: Int, columns: Int, rank: Int) {
        let base = random([rows, columns], seed: 3), up = random([rows, rank], seed: 4), down = random([rank, columns], seed: 5)
        let scale: Float = 0.7
        var expected = [Float](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for c in 0..<columns {
                var acc: Float = 0
                for k in 0..<rank { acc += up.data[r * rank + k] * down.data[k * columns + c] }
                expected[r * columns + c] = base.data[r * columns + c] + acc * scale
            }
        }
        let out = Tensor(zeros: [rows, columns])
        Elementwise.lowRankFuse(base: base.data, up: up.data, down: down.data, into: out.data,
                                rows: rows, columns: columns, rank: rank, scale: scale)
        expectClose(out.scalars, expected, rtol: 1e-5)
        // Streaming stores (aligned rows) and their fallback (an unaligned destination): the same bits.
        let streamed = Tensor(zeros: [rows, columns + 1])
        for offset in [0, 1] {
            Elementwise.lowRankFuse(base: base.data, up: up.data, down: down.data, into: streamed.data + offset,
                                    rows: rows, columns: columns, rank: rank, scale: scale, streaming: true)
            #expect(Array(UnsafeBufferPointer(start: streamed.data + offset, count: rows * columns)) == out.scalars)
        }
        Elementwise.lowRankFuse(base: base.data, up: up.data, down: down.data, into: base.data,
                                rows: rows, columns: columns, rank: rank, scale: scale)
        #expect(base.scalars == out.scalars)
    }

    @Test func conv2dParallelUnfold() {
        let x = random([1, 16, 40, 48], seed: 11)
        let w = random([8, 16, 3, 3], seed: 12)
        let b = random([8], seed: 13)
        let shape = Conv2dShape(inChannels: 16, outChannels: 8, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1)
        let y = Convolution.conv2d(x, weight: w, bias: b, shape: shape)
        expectClose(y.scalars, naiveConv(x, w, b, stride: 1, padding: 1), rtol: 1e-5)
    }

    /// Winograd F(2x2, 3x3) and F(4x4, 3x3) against the naive convolution: sizes that are and are not
    /// multiples of the tile (partial edge tiles), batch 2, several chunks per image (tiny chunk budget)
    /// and one chunk per image, with and without bias.
    @Test(arguments: [(9, 7, 40), (8, 8, 1 << 20), (13, 10, 1), (1, 1, 1 << 20), (6, 11, 300)],
          [WinogradConvolution.Variant.f2x2, .f4x4])
    func winogradConv2d(size: (height: Int, width: Int, chunkFloats: Int), variant: WinogradConvolution.Variant) {
        let (height, width, chunkFloats) = size
        let x = random([2, 5, height, width], seed: 21)
        let w = random([6, 5, 3, 3], seed: 22)
        let b = random([6], seed: 23)
        var tuning = Tuning.current
        tuning.winogradChunkFloats = chunkFloats
        Tuning.$current.withValue(tuning) {
            let u = WinogradConvolution.transformWeights(w, variant: variant)
            #expect(u.shape == [variant.products, 6, 5])
            let y = WinogradConvolution.conv2d(x, transformedWeights: u, bias: b)
            #expect(y.shape == [2, 6, height, width])
            expectClose(y.scalars, naiveConv(x, w, b, stride: 1, padding: 1), rtol: 1e-5)
            let zero = Tensor(shape: [6], values: [Float](repeating: 0, count: 6))
            let unbiased = WinogradConvolution.conv2d(x, transformedWeights: u, bias: nil)
            expectClose(unbiased.scalars, naiveConv(x, w, zero, stride: 1, padding: 1), rtol: 1e-5)
        }
    }

    /// The Conv2d path switch: `conv2d` with transformed weights takes Winograd only where it applies.
    @Test func winogradAppliesOnlyToLargeStrideOnePaddedThreeByThree() {
        let three = Conv2dShape(inChannels: 4, outChannels: 4, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1)
        let strided = Conv2dShape(inChannels: 4, outChannels: 4, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1)
        let one = Conv2dShape(inChannels: 4, outChannels: 4, kernelHeight: 1, kernelWidth: 1)
        // The defaults, whatever HOTSWAP_WINOGRAD_* this run set.
        Tuning.$current.withValue(Tuning()) {
            #expect(WinogradConvolution.variant(for: three, height: 64, width: 64) == .f4x4)
            #expect(WinogradConvolution.variant(for: three, height: 32, width: 32) == .f2x2)
            #expect(WinogradConvolution.variant(for: three, height: 16, width: 16) == nil)
            #expect(WinogradConvolution.variant(for: strided, height: 64, width: 64) == nil)
            #expect(WinogradConvolution.variant(for: one, height: 64, width: 64) == nil)
        }
    }

    @Test(arguments: [false, true])
    func attention(causal: Bool) {
        var tuning = Tuning.current
        tuning.attentionMaxScoreFloats = 2 * 5  // force chunking in the unfused path
        Tuning.$current.withValue(tuning) {
            checkAttention(batch: 2, queryLength: 7, keyLength: causal ? 7 : 5, heads: 3, dim: 4, causal: causal)
        }
    }

    /// The fused kernel against the naive loops, on shapes that cross its block edges: several key blocks
    /// (256) and query blocks (64) with remainders, keys not a multiple of the 32-key panel (77: the text's
    /// cross-attention), head sizes that split into 3 + 2, 3 + 1 and 3 + a half output vectors (80, 64, 56), 2.5
    /// (40) and a half alone (5), and both paths.
    @Test(arguments: [(1, 130, 77, 2, 40), (1, 67, 300, 1, 80), (2, 9, 33, 2, 64), (1, 1030, 40, 1, 5), (1, 20, 600, 1, 160), (1, 70, 100, 1, 56)])
    func fusedAttention(shape: (Int, Int, Int, Int, Int)) {
        for fused in [true, false] {
            var tuning = Tuning.current
            tuning.attentionFusedKernel = fused
            Tuning.$current.withValue(tuning) {
                checkAttention(batch: shape.0, queryLength: shape.1, keyLength: shape.2, heads: shape.3, dim: shape.4, causal: false)
            }
        }
    }

    func checkAttention(batch: Int, queryLength lq: Int, keyLength lk: Int, heads: Int, dim: Int, causal: Bool) {
        let q = random([batch, lq, heads * dim], seed: 4)
        let k = random([batch, lk, heads * dim], seed: 5)
        let v = random([batch, lk, heads * dim], seed: 6)
        let out = Attention.scaledDotProduct(query: q, key: k, value: v, heads: heads, causal: causal)
        var expected = [Float](repeating: 0, count: batch * lq * heads * dim)
        for b in 0..<batch { for h in 0..<heads { for i in 0..<lq {
            var scores = [Double](repeating: -.infinity, count: lk)
            for j in 0..<lk where !causal || j <= i {
                var s = 0.0
                for d in 0..<dim { s += Double(q.data[(b * lq + i) * heads * dim + h * dim + d]) * Double(k.data[(b * lk + j) * heads * dim + h * dim + d]) }
                scores[j] = s / Double(dim).squareRoot()
            }
            let m = scores.max()!
            let e = scores.map { Foundation.exp($0 - m) }
            let total = e.reduce(0, +)
            for d in 0..<dim {
                var s = 0.0
                for j in 0..<lk { s += e[j] / total * Double(v.data[(b * lk + j) * heads * dim + h * dim + d]) }
                expected[(b * lq + i) * heads * dim + h * dim + d] = Float(s)
            }
        }}}
        expectClose(out.scalars, expected, rtol: 1e-5)
    }

    @Test func groupNormWithSiLU() {
        let x = random([2, 8, 5], seed: 7)
        let gamma = random([8], seed: 8), beta = random([8], seed: 9)
        let y = Tensor(zeros: x.shape)
        Normalization.groupNorm(x.data, into: y.data, batch: 2, channels: 8, spatial: 5, groups: 4,
                                gamma: gamma.data, beta: beta.data, epsilon: 1e-5, silu: true)
        var expected = [Float](repeating: 0, count: x.count)
        for b in 0..<2 { for g in 0..<4 {
            let range = (b * 8 + g * 2) * 5 ..< (b * 8 + g * 2 + 2) * 5
            let values = range.map { Double(x.data[$0]) }
            let mean = values.reduce(0, +) / 10
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 10
            for i in range {
                let c = (i / 5) % 8
                let n = (Double(x.data[i]) - mean) / (variance + 1e-5).squareRoot() * Double(gamma.data[c]) + Double(beta.data[c])
                expected[i] = Float(n / (1 + Foundation.exp(-n)))
            }
        }}
        expectClose(y.scalars, expected, rtol: 1e-5)
    }

    @Test func vectorExpMatchesLibm() {
        let inputs = stride(from: -100.0, through: 88.0, by: 0.37).map { Float($0) }
        var worst: Float = 0
        for x in inputs {
            var got = x
            Softmax.expInPlace(&got, count: 1)
            let want = Foundation.exp(x)
            if want > 1e-30 { worst = max(worst, abs(got - want) / want) }
            else { #expect(got < 1e-30) }
        }
        #expect(worst < 4e-7, "worst relative error \(worst)")
    }

    @Test func activations() {
        let x = random([37], seed: 10)
        let references: [(Activation, (Double) -> Double)] = [
            (.silu, { v in v / (1 + Foundation.exp(-v)) }),
            (.quickGelu, { v in v / (1 + Foundation.exp(-1.702 * v)) }),
            (.gelu, { v in 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot())) }),
        ]
        for (activation, reference) in references {
            let y = x.copy()
            activation.apply(y.data, count: y.count)
            expectClose(y.scalars, x.scalars.map { Float(reference(Double($0))) }, rtol: 1e-6)
        }
    }
}

/// Tuning values a test sets reach only its own task: a suite running beside it keeps the process' values.
@Suite struct TuningTests {
    @Test func overridesStayInTheirTask() async {
        var tuning = Tuning.current
        tuning.convolutionMaxColumnFloats = 17
        await Tuning.$current.withValue(tuning) {
            #expect(Tuning.current.convolutionMaxColumnFloats == 17)
            let elsewhere = await Task.detached { Tuning.current.convolutionMaxColumnFloats }.value
            #expect(elsewhere == Tuning.process.convolutionMaxColumnFloats)
        }
        #expect(Tuning.current == Tuning.process)
    }

    @Test func environmentIsReadOnceWithDefaultsForBadValues() {
        let tuning = Tuning.fromEnvironment(["HOTSWAP_WINOGRAD_MIN_TILES": "0", "HOTSWAP_WINOGRAD_CHUNK_FLOATS": "-3",
                                             "HOTSWAP_FUSED_ATTENTION": "0", "HOTSWAP_ATTENTION_SCORE_FLOATS": "x"])
        #expect(tuning.winogradMinimumTiles == 0)
        #expect(tuning.winogradChunkFloats == Tuning().winogradChunkFloats)
        #expect(!tuning.attentionFusedKernel && tuning.attentionParallelHeads)
        #expect(tuning.attentionMaxScoreFloats == Tuning().attentionMaxScoreFloats)
    }

    @Test func linearKernelRowsParse() {
        func rows(_ text: String) -> ClosedRange<Int>? { Tuning.fromEnvironment(["HOTSWAP_LINEAR_KERNEL_ROWS": text]).linearKernelRows }
        #expect(rows("0") == nil)
        #expect(rows("1-100000") == 1...100000)
        for malformed in ["9-3", "0-5", "12", "a-b", "-4", ""] { #expect(rows(malformed) == Tuning().linearKernelRows, "\(malformed)") }
    }
}
