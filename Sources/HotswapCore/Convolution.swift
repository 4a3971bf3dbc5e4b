import CKernels
import Foundation
/// 2-D convolution (torch.nn.Conv2d semantics, NCHW, groups = 1) as im2col + sgemm.
/// A 1x1 stride-1 convolution is a plain sgemm on the input. Larger kernels unfold a band of
/// output rows at a time into a column buffer bounded by `Tuning.convolutionMaxColumnFloats`, so the VAE's
/// 512x512 layers never need gigabytes of scratch.
public struct Conv2dShape: Sendable, Equatable {
    public let inChannels: Int, outChannels: Int
    public let kernelHeight: Int, kernelWidth: Int
    public let stride: Int, padding: Int

    public init(inChannels: Int, outChannels: Int, kernelHeight: Int, kernelWidth: Int,
                stride: Int = 1, padding: Int = 0) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.stride = stride
        self.padding = padding
    }

    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        ((height + 2 * padding - kernelHeight) / stride + 1, (width + 2 * padding - kernelWidth) / stride + 1)
    }
}

public enum Convolution {

    /// input [batch, inC, H, W], weight [outC, inC, kh, kw], bias [outC]? -> output [batch, outC, Ho, Wo].
    /// `winogradWeights` (WinogradConvolution.transformWeights of `weight`), when given and the layer
    /// and size qualify for its variant (`WinogradConvolution.variant`), takes the Winograd path.
    public static func conv2d(_ input: Tensor, weight: Tensor, bias: Tensor?, shape: Conv2dShape,
                              winogradWeights: Tensor? = nil) -> Tensor {
        precondition(input.rank == 4 && input.shape[1] == shape.inChannels,
                     "conv2d: input \(input.shape) for \(shape.inChannels) channels")
        let (outH, outW) = shape.outputSize(height: input.shape[2], width: input.shape[3])
        // Nominal (direct-convolution) work, so the profile's GFLOPS are comparable across paths.
        let work = 2.0 * Double(input.shape[0] * shape.outChannels * outH * outW * shape.inChannels * shape.kernelHeight * shape.kernelWidth)
        let kind: OpProfile.Kind = shape.kernelHeight == 1 && shape.kernelWidth == 1 ? .conv1x1 : .conv3x3
        return OpProfile.measure(kind, flops: work) {
            if let winogradWeights,
               WinogradConvolution.variant(for: shape, height: input.shape[2], width: input.shape[3])?.products == winogradWeights.shape[0] {
                return WinogradConvolution.conv2d(input, transformedWeights: winogradWeights, bias: bias)
            }
            return convolve(input, weight: weight, bias: bias, shape: shape)
        }
    }

    /// How a convolution's product [outC, reduction] x [reduction, positions] runs.
    enum ProductPath {
        /// One sgemm into NCHW: wide feature maps.
        case weightTimesColumns
        /// [positions, outC] by sgemm, then transposed: OpenBLAS runs weight x columns with few
        /// columns at 28-85 GFLOPS on 2 Zen 3 cores, this orientation at 47-114 (docs/PERFORMANCE.md).
        case transposed
        /// hs_sgemm_few_columns (CKernels/few_columns_impl.h): 4x4 maps, 75-87 GFLOPS there.
        case fewColumns

        static func forProduct(positions: Int) -> ProductPath {
            let tuning = Tuning.current
            if positions <= tuning.convolutionFewColumnsMaxPositions && hs_isa_level() >= 1 { return .fewColumns }
            if positions <= tuning.convolutionTransposedMaxPositions { return .transposed }
            return .weightTimesColumns
        }
    }

    /// Column rows padded for hs_sgemm_few_columns' vector loads.
    static func fewColumnsStride(_ positions: Int) -> Int { (positions + 15) / 16 * 16 }

    /// Zeroes the padding lanes of each column row: they are multiplied and discarded, but a
    /// pooled buffer's leftovers could be subnormals, which slow the products down.
    static func zeroPadding(_ columns: UnsafeMutablePointer<Float>, rows: Int, positions: Int, stride: Int) {
        guard stride > positions else { return }
        for r in 0..<rows { (columns + r * stride + positions).update(repeating: 0, count: stride - positions) }
    }

    static func convolve(_ input: Tensor, weight: Tensor, bias: Tensor?, shape: Conv2dShape) -> Tensor {
        let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
        let (outH, outW) = shape.outputSize(height: height, width: width)
        let output = Tensor(uninitialized: [batch, shape.outChannels, outH, outW])
        let reduction = shape.inChannels * shape.kernelHeight * shape.kernelWidth
        let isPointwise = shape.kernelHeight == 1 && shape.kernelWidth == 1 && shape.stride == 1 && shape.padding == 0
        let rowsPerBand = isPointwise ? outH : max(1, min(outH, Tuning.current.convolutionMaxColumnFloats / max(1, reduction * outW)))
        if batch > 1, !isPointwise, reduction * batch * outH * outW <= Tuning.current.convolutionMaxColumnFloats {
            return convolveBatched(input, weight: weight, bias: bias, shape: shape, into: output)
        }
        let positions = outH * outW
        // The small-map paths take the whole map as one product; banded maps are wide anyway.
        let path: ProductPath = rowsPerBand == outH ? .forProduct(positions: positions) : .weightTimesColumns
        if path == .fewColumns {
            convolveFewColumns(input, weight: weight, shape: shape, isPointwise: isPointwise, into: output)
        } else {
            // Scratch from the pool: a fresh 64 MB malloc per call would be page-faulted in every time.
            let scratch = isPointwise ? nil : TensorStorage(uninitializedCount: reduction * rowsPerBand * outW)
            let products = path == .transposed ? TensorStorage(uninitializedCount: positions * shape.outChannels) : nil
            for b in 0..<batch {
                let src = input.data + b * shape.inChannels * height * width
                let dst = output.data + b * shape.outChannels * positions
                var firstRow = 0
                while firstRow < outH {
                    let rows = min(rowsPerBand, outH - firstRow)
                    var columns = UnsafePointer(src)
                    if let scratch {
                        unfoldInParallel(src, height: height, width: width, shape: shape,
                                         firstRow: firstRow, rows: rows, outWidth: outW, into: scratch.pointer)
                        columns = UnsafePointer(scratch.pointer)
                    }
                    if let products {
                        multiplyTransposed(weight: weight.data, columns: columns, outChannels: shape.outChannels,
                                           reduction: reduction, positions: positions, into: products.pointer)
                        Layout.transpose(products.pointer, rows: positions, columns: shape.outChannels, into: dst)
                    } else {
                        BLAS.sgemm(m: shape.outChannels, n: rows * outW, k: reduction,
                                   a: weight.data, lda: reduction,
                                   b: columns, ldb: rows * outW,
                                   c: dst + firstRow * outW, ldc: positions)
                    }
                    firstRow += rows
                }
            }
            withExtendedLifetime((scratch, products)) {}
        }
        if let bias {
            for b in 0..<batch {
                Elementwise.addChannelBias(output.data + b * shape.outChannels * positions, bias: bias.data,
                                           channels: shape.outChannels, spatial: positions)
            }
        }
        return output
    }

    /// Each image's product by hs_sgemm_few_columns into NCHW, output channels split over the
    /// BLAS thread count (BLAS' own threads sleep meanwhile: OPENBLAS_THREAD_TIMEOUT).
    static func convolveFewColumns(_ input: Tensor, weight: Tensor, shape: Conv2dShape, isPointwise: Bool,
                                   into output: Tensor) {
        let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
        let (outH, outW) = (output.shape[2], output.shape[3])
        let positions = outH * outW, stride = fewColumnsStride(positions)
        let reduction = shape.inChannels * shape.kernelHeight * shape.kernelWidth
        let columns = TensorStorage(uninitializedCount: reduction * stride)  // pooled
        for b in 0..<batch {
            let src = input.data + b * shape.inChannels * height * width
            if isPointwise {
                for c in 0..<shape.inChannels {
                    (columns.pointer + c * stride).update(from: src + c * positions, count: positions)
                }
            } else {
                unfoldInParallel(src, height: height, width: width, shape: shape, firstRow: 0, rows: outH,
                                 outWidth: outW, into: columns.pointer, rowStride: stride)
            }
            zeroPadding(columns.pointer, rows: reduction, positions: positions, stride: stride)
            multiplyFewColumns(weight: weight.data, columns: columns.pointer, columnStride: stride,
                               outChannels: shape.outChannels, reduction: reduction, positions: positions,
                               into: output.data + b * shape.outChannels * positions)
        }
        withExtendedLifetime(columns) {}
    }

    /// products[outC, positions] = weight[outC, reduction] x columns[reduction, positions (row stride
    /// columnStride)] by hs_sgemm_few_columns, output channels split over the BLAS thread count.
    static func multiplyFewColumns(weight: UnsafePointer<Float>, columns: UnsafePointer<Float>, columnStride: Int,
                                   outChannels: Int, reduction: Int, positions: Int,
                                   into products: UnsafeMutablePointer<Float>) {
        let workers = max(1, min(BLAS.threadCount, outChannels / 12))
        // Slices of whole 12-row tiles, the kernel's widest.
        func rows(_ part: Int) -> Int { part == workers ? outChannels : (outChannels / 12) * part / workers * 12 }
        let run = { (part: Int) in
            let lower = rows(part), upper = rows(part + 1)
            hs_sgemm_few_columns(weight + lower * reduction, reduction, columns, columnStride,
                                 products + lower * positions, positions, upper - lower, reduction, positions)
        }
        if workers == 1 { run(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: run) }
    }

    /// products[positions, outC] = columns[reduction, positions]ᵀ x weight[outC, reduction]ᵀ: the
    /// convolution's product with its output transposed (ProductPath.transposed).
    static func multiplyTransposed(weight: UnsafePointer<Float>, columns: UnsafePointer<Float>, outChannels: Int,
                                   reduction: Int, positions: Int, into products: UnsafeMutablePointer<Float>) {
        BLAS.sgemm(transA: true, transB: true, m: positions, n: outChannels, k: reduction,
                   a: columns, lda: positions, b: weight, ldb: reduction,
                   c: products, ldc: outChannels)
    }

    /// Small feature maps (the UNet's 16x16 and 8x8 levels) of a batch (CFG's 2): one product over
    /// the whole batch's columns, so the layer's weight (59 MB for 1280 -> 1280 channels) is
    /// streamed from memory once instead of once per image; then each image's rows are copied out.
    static func convolveBatched(_ input: Tensor, weight: Tensor, bias: Tensor?, shape: Conv2dShape,
                                into output: Tensor) -> Tensor {
        let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
        let (outH, outW) = (output.shape[2], output.shape[3])
        let plane = outH * outW, positions = batch * plane
        let reduction = shape.inChannels * shape.kernelHeight * shape.kernelWidth
        let path = ProductPath.forProduct(positions: positions)
        let stride = path == .fewColumns ? fewColumnsStride(positions) : positions
        let columns = TensorStorage(uninitializedCount: reduction * stride)  // pooled
        let products = TensorStorage(uninitializedCount: shape.outChannels * positions)
        for b in 0..<batch {
            unfoldInParallel(input.data + b * shape.inChannels * height * width, height: height, width: width,
                             shape: shape, firstRow: 0, rows: outH, outWidth: outW,
                             into: columns.pointer + b * plane, rowStride: stride)
        }
        switch path {
        case .fewColumns:
            zeroPadding(columns.pointer, rows: reduction, positions: positions, stride: stride)
            multiplyFewColumns(weight: weight.data, columns: columns.pointer, columnStride: stride,
                               outChannels: shape.outChannels, reduction: reduction, positions: positions,
                               into: products.pointer)
        case .transposed:
            multiplyTransposed(weight: weight.data, columns: columns.pointer, outChannels: shape.outChannels,
                               reduction: reduction, positions: positions, into: products.pointer)
        case .weightTimesColumns:
            BLAS.sgemm(m: shape.outChannels, n: positions, k: reduction,
                       a: weight.data, lda: reduction,
                       b: columns.pointer, ldb: positions,
                       c: products.pointer, ldc: positions)
        }
        for b in 0..<batch {
            let dst = output.data + b * shape.outChannels * plane
            if path == .transposed {
                // products[image b's positions, outC] -> dst[outC, plane]
                Layout.transpose(products.pointer + b * plane * shape.outChannels, rows: plane,
                                 columns: shape.outChannels, into: dst)
            } else {
                for k in 0..<shape.outChannels {
                    (dst + k * plane).update(from: products.pointer + k * positions + b * plane, count: plane)
                }
            }
            if let bias {
                Elementwise.addChannelBias(dst, bias: bias.data, channels: shape.outChannels, spatial: plane)
            }
        }
        withExtendedLifetime((columns, products)) {}
        return output
    }

    /// The unfold split by input channels over the BLAS thread count: it runs between two
    /// sgemm calls, when BLAS' own threads only wait.
    static func unfoldInParallel(_ src: UnsafePointer<Float>, height: Int, width: Int, shape: Conv2dShape,
                                 firstRow: Int, rows: Int, outWidth: Int, into columns: UnsafeMutablePointer<Float>,
                                 rowStride: Int? = nil) {
        let workers = min(BLAS.threadCount, shape.inChannels)
        let work = shape.inChannels * shape.kernelHeight * shape.kernelWidth * rows * outWidth
        guard workers > 1, work >= 1 << 18 else {
            unfold(src, height: height, width: width, shape: shape, channels: 0..<shape.inChannels,
                   firstRow: firstRow, rows: rows, outWidth: outWidth, into: columns, rowStride: rowStride)
            return
        }
        Parallel.split(shape.inChannels, over: workers) { _, channels in
            unfold(src, height: height, width: width, shape: shape, channels: channels,
                   firstRow: firstRow, rows: rows, outWidth: outWidth, into: columns, rowStride: rowStride)
        }
    }

    /// im2col for output rows [firstRow, firstRow + rows): columns[(c, ki, kj) * rowStride + (row, x)]
    /// (rowStride defaults to rows * outWidth).
    static func unfold(_ src: UnsafePointer<Float>, height: Int, width: Int, shape: Conv2dShape, channels: Range<Int>,
                       firstRow: Int, rows: Int, outWidth: Int, into columns: UnsafeMutablePointer<Float>,
                       rowStride: Int? = nil) {
        let bandWidth = rowStride ?? rows * outWidth
        let stride = shape.stride, padding = shape.padding
        var columnRow = channels.lowerBound * shape.kernelHeight * shape.kernelWidth
        for c in channels {
            let plane = src + c * height * width
            for ki in 0..<shape.kernelHeight {
                for kj in 0..<shape.kernelWidth {
                    let out = columns + columnRow * bandWidth
                    for r in 0..<rows {
                        let y = (firstRow + r) * stride - padding + ki
                        let outRow = out + r * outWidth
                        if y < 0 || y >= height {
                            outRow.update(repeating: 0, count: outWidth)
                            continue
                        }
                        let inRow = plane + y * width
                        if stride == 1 {
                            // x = ox - padding + kj; valid for ox in [lo, hi)
                            let lo = max(0, padding - kj)
                            let hi = min(outWidth, width + padding - kj)
                            if lo > 0 { outRow.update(repeating: 0, count: min(lo, outWidth)) }
                            if hi > lo { (outRow + lo).update(from: inRow + (lo - padding + kj), count: hi - lo) }
                            if hi < outWidth { (outRow + max(hi, 0)).update(repeating: 0, count: outWidth - max(hi, 0)) }
                        } else {
                            for ox in 0..<outWidth {
                                let x = ox * stride - padding + kj
                                outRow[ox] = (x >= 0 && x < width) ? inRow[x] : 0
                            }
                        }
                    }
                    columnRow += 1
                }
            }
        }
    }
}
