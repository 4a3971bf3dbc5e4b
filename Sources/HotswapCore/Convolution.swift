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
        // Scratch from the pool: a fresh 64 MB malloc per call would be page-faulted in every time.
        let scratch = isPointwise ? nil : TensorStorage(uninitializedCount: reduction * rowsPerBand * outW)
        let columns = scratch?.pointer

        for b in 0..<batch {
            let src = input.data + b * shape.inChannels * height * width
            let dst = output.data + b * shape.outChannels * outH * outW
            if isPointwise {
                BLAS.sgemm(m: shape.outChannels, n: outH * outW, k: shape.inChannels,
                           a: weight.data, lda: shape.inChannels,
                           b: src, ldb: outH * outW,
                           c: dst, ldc: outH * outW)
            } else if let columns {
                var firstRow = 0
                while firstRow < outH {
                    let rows = min(rowsPerBand, outH - firstRow)
                    unfoldInParallel(src, height: height, width: width, shape: shape,
                                     firstRow: firstRow, rows: rows, outWidth: outW, into: columns)
                    BLAS.sgemm(m: shape.outChannels, n: rows * outW, k: reduction,
                               a: weight.data, lda: reduction,
                               b: columns, ldb: rows * outW,
                               c: dst + firstRow * outW, ldc: outH * outW)
                    firstRow += rows
                }
            }
            if let bias {
                Elementwise.addChannelBias(dst, bias: bias.data, channels: shape.outChannels, spatial: outH * outW)
            }
        }
        withExtendedLifetime(scratch) {}
        return output
    }

    /// Small feature maps (the UNet's 16x16 and 8x8 levels) of a batch (CFG's 2): one product over
    /// the whole batch's columns, so the layer's weight (59 MB for 1280 -> 1280 channels) is
    /// streamed from memory once instead of once per image; then each image's rows are copied out.
    static func convolveBatched(_ input: Tensor, weight: Tensor, bias: Tensor?, shape: Conv2dShape,
                                into output: Tensor) -> Tensor {
        let (batch, height, width) = (input.shape[0], input.shape[2], input.shape[3])
        let (outH, outW) = (output.shape[2], output.shape[3])
        let plane = outH * outW
        let reduction = shape.inChannels * shape.kernelHeight * shape.kernelWidth
        let columns = TensorStorage(uninitializedCount: reduction * batch * plane)  // pooled
        let products = TensorStorage(uninitializedCount: shape.outChannels * batch * plane)
        for b in 0..<batch {
            unfoldInParallel(input.data + b * shape.inChannels * height * width, height: height, width: width,
                             shape: shape, firstRow: 0, rows: outH, outWidth: outW,
                             into: columns.pointer + b * plane, rowStride: batch * plane)
        }
        BLAS.sgemm(m: shape.outChannels, n: batch * plane, k: reduction,
                   a: weight.data, lda: reduction,
                   b: columns.pointer, ldb: batch * plane,
                   c: products.pointer, ldc: batch * plane)
        for b in 0..<batch {
            let dst = output.data + b * shape.outChannels * plane
            for k in 0..<shape.outChannels {
                (dst + k * plane).update(from: products.pointer + k * batch * plane + b * plane, count: plane)
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
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let lower = shape.inChannels * worker / workers, upper = shape.inChannels * (worker + 1) / workers
            unfold(src, height: height, width: width, shape: shape, channels: lower..<upper,
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
