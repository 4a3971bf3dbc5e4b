import CKernels
import Foundation

/// 3x3, stride-1, padding-1 convolutions by Winograd F(2x2, 3x3) (CKernels/winograd_impl.h):
/// 16 sgemms of [K, C] x [C, tiles] instead of one [K, 9C] x [9C, H*W] im2col product, 2.25x
/// fewer multiplies, and no 9x unfolded copy of the input. On maps of 64x64 and more, F(4x4, 3x3):
/// 36 sgemms, 4x fewer multiplies than direct, transformed weights 4x the weight's size. Used where the image is large enough
/// for the tile products to be efficient and the transformed weights (16/9 of the weight, kept per
/// layer) worth their memory: at least 256 tiles, a 32x32 map. The UNet's 16x16 and 8x8 levels at 512
/// (its largest weights, 1280 channels) stay on im2col: there Winograd measured no faster and its
/// weights would add ~1.6 GB.
///
/// The image is worked in chunks of tile rows (bounded by `Tuning.winogradChunkFloats`, which also bounds the
/// scratch of the VAE's 512x512 layers). Each chunk runs in three phases spread over the BLAS
/// thread count: the input transform split by channels, the 16 products split by xi (each
/// single-threaded, so every transformed weight matrix is read once per chunk, over all its tiles),
/// the output transform split by output channels.
public enum WinogradConvolution {
    /// The two tile sizes: F(m x m, 3x3) with (m + 2)^2 products.
    public enum Variant: Sendable {
        case f2x2, f4x4
        public var outputTile: Int { self == .f2x2 ? 2 : 4 }
        public var products: Int { self == .f2x2 ? 16 : 36 }
    }

    /// The variant `conv2d` takes for a layer and input size, or nil for im2col.
    public static func variant(for shape: Conv2dShape, height: Int, width: Int) -> Variant? {
        guard shape.kernelHeight == 3 && shape.kernelWidth == 3 && shape.stride == 1 && shape.padding == 1 else { return nil }
        if ((height + 3) / 4) * ((width + 3) / 4) >= max(1, Tuning.current.winogradMinimumLargeTiles) { return .f4x4 }
        if ((height + 1) / 2) * ((width + 1) / 2) >= max(1, Tuning.current.winogradMinimumTiles) { return .f2x2 }
        return nil
    }

    /// weight [K, C, 3, 3] -> U [products, K, C] (computed once per weight; Conv2d caches it).
    public static func transformWeights(_ weight: Tensor, variant: Variant) -> Tensor {
        precondition(weight.rank == 4 && weight.shape[2] == 3 && weight.shape[3] == 3, "winograd weights \(weight.shape)")
        let (k, c) = (weight.shape[0], weight.shape[1])
        let u = Tensor(uninitialized: [variant.products, k, c])
        switch variant {
        case .f2x2: hs_winograd_f23_weights(weight.data, k, c, u.data)
        case .f4x4: hs_winograd_f43_weights(weight.data, k, c, u.data)
        }
        return u
    }

    /// input [batch, C, H, W], transformed weights [16 or 36, K, C] (the variant follows from it)
    /// -> output [batch, K, H, W] (+ bias).
    public static func conv2d(_ input: Tensor, transformedWeights u: Tensor, bias: Tensor?) -> Tensor {
        let (batch, c, height, width) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let k = u.shape[1]
        precondition(u.rank == 3 && (u.shape[0] == 16 || u.shape[0] == 36) && u.shape[2] == c,
                     "winograd: input \(input.shape) weights \(u.shape)")
        let variant: Variant = u.shape[0] == 16 ? .f2x2 : .f4x4
        let (tile, products) = (variant.outputTile, variant.products)
        let output = Tensor(uninitialized: [batch, k, height, width])
        let tilesH = (height + tile - 1) / tile, tilesW = (width + tile - 1) / tile
        let rowsPerChunk = max(1, min(tilesH, Tuning.current.winogradChunkFloats / (products * (c + k) * tilesW)))
        let maxTiles = rowsPerChunk * tilesW
        let transformed = TensorStorage(uninitializedCount: products * c * maxTiles)  // pooled
        let productStorage = TensorStorage(uninitializedCount: products * k * maxTiles)
        let blasThreads = BLAS.threadCount
        let workers = max(1, blasThreads)
        // Per worker: F(2x2) needs 8 * (tilesW + 1) floats, F(4x4) 6 * (4 * tilesW + 2) in, 16 * tilesW out.
        let scratchPerWorker = variant == .f2x2 ? 8 * (tilesW + 1) : 6 * (4 * tilesW + 2)
        let rowScratch = TensorStorage(uninitializedCount: workers * scratchPerWorker)
        let (v, m, scratch) = (transformed.pointer, productStorage.pointer, rowScratch.pointer)
        let bias = bias?.data

        func split(_ count: Int, _ body: (Int, Range<Int>) -> Void) { Parallel.split(count, over: workers, body) }

        if workers > 1 { BLAS.threadCount = 1 }
        for b in 0..<batch {
            let src = input.data + b * c * height * width
            let dst = output.data + b * k * height * width
            var firstRow = 0
            while firstRow < tilesH {
                let rows = min(rowsPerChunk, tilesH - firstRow)
                let tiles = rows * tilesW
                split(c) { part, channels in
                    let (from, into, work) = (src + channels.lowerBound * height * width, v + channels.lowerBound * tiles,
                                              scratch + part * scratchPerWorker)
                    switch variant {
                    case .f2x2: hs_winograd_f23_input(from, channels.count, height, width, firstRow, rows, into, c * tiles, work)
                    case .f4x4: hs_winograd_f43_input(from, channels.count, height, width, firstRow, rows, into, c * tiles, work)
                    }
                }
                split(products) { _, xis in
                    for xi in xis {
                        BLAS.sgemm(m: k, n: tiles, k: c,
                                   a: u.data + xi * k * c, lda: c,
                                   b: v + xi * c * tiles, ldb: tiles,
                                   c: m + xi * k * tiles, ldc: tiles)
                    }
                }
                split(k) { part, channels in
                    let (from, into, work) = (m + channels.lowerBound * tiles, dst + channels.lowerBound * height * width,
                                              scratch + part * scratchPerWorker)
                    let channelBias = bias.map { $0 + channels.lowerBound }
                    switch variant {
                    case .f2x2: hs_winograd_f23_output(from, channels.count, height, width, firstRow, rows, k * tiles, channelBias, into, work)
                    case .f4x4: hs_winograd_f43_output(from, channels.count, height, width, firstRow, rows, k * tiles, channelBias, into, work)
                    }
                }
                firstRow += rows
            }
        }
        if workers > 1 { BLAS.threadCount = blasThreads }
        withExtendedLifetime((transformed, productStorage, rowScratch)) {}
        return output
    }
}
