import CKernels
import Foundation

/// y = x W^T + bias for a torch Linear (W: [outFeatures, inFeatures]): the one entry point for
/// every Linear product. Row counts in `Tuning.linearKernelRows` (the text encoders' 77 and 154
/// tokens) run on hs_linear_product (CKernels/linear_product_impl.h), the rest on OpenBLAS.
public enum LinearProduct {
    public static func compute(x: UnsafePointer<Float>, rows: Int, inFeatures: Int,
                               weight: UnsafePointer<Float>, outFeatures: Int, bias: UnsafePointer<Float>?,
                               into y: UnsafeMutablePointer<Float>) {
        guard let range = Tuning.current.linearKernelRows, range.contains(rows), inFeatures > 0 else {
            BLAS.sgemm(transB: true, m: rows, n: outFeatures, k: inFeatures,
                       a: x, lda: inFeatures, b: weight, ldb: inFeatures, c: y, ldc: outFeatures)
            if let bias { Elementwise.addRowBias(y, bias: bias, rows: rows, columns: outFeatures) }
            return
        }
        let packed = TensorStorage(uninitializedCount: hs_linear_packed_x_floats(rows, inFeatures))  // pooled
        let panels = hs_linear_panels(rows)
        // Each part owns whole 6-row tiles of the weight; one part per BLAS thread.
        let tiles = (outFeatures + 5) / 6
        let parts = max(1, min(BLAS.threadCount, tiles))
        let scratchFloats = hs_linear_scratch_floats(rows)
        let scratch = TensorStorage(uninitializedCount: parts * scratchFloats)
        let (xp, work) = (packed.pointer, scratch.pointer)
        Parallel.split(panels, over: parts) { _, range in
            hs_linear_pack_x(x, inFeatures, rows, inFeatures, xp, range.lowerBound, range.upperBound)
        }
        Parallel.split(tiles, over: parts) { part, range in
            hs_linear_product(xp, rows, inFeatures, weight, inFeatures, bias, y, outFeatures,
                              range.lowerBound * 6, min(outFeatures, range.upperBound * 6), work + part * scratchFloats)
        }
        withExtendedLifetime((packed, scratch)) {}
    }
}
