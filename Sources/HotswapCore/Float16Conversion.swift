import Dispatch

// Bulk conversion between Float32 and the 16-bit float formats of checkpoints (IEEE half "F16" and
// bfloat16 "BF16"), fast enough that loading a 1.7 GB F16 UNet is bound by memory bandwidth.
//
// Why bit tricks instead of `Float(Float16)` / `SIMD16<Float>(SIMD16<Float16>)`: the package is
// built for baseline x86-64 (no F16C), where every Float16 -> Float conversion is a call into
// compiler-rt (~0.3 G elements/s), and the generic SIMD16 code path is slower still (~0.08 G/s,
// measured). The branch-free integer formulation below is a plain loop over UInt16 -> UInt32 that
// LLVM auto-vectorizes (selects become blends); one core converts ~2.5 G elements/s, two cores
// ~5 G/s, i.e. memory bandwidth. It is exact for every one of the 65536 half values (including
// subnormals, infinities and NaN payloads); the tests check all of them against Float16.
//
// Large arrays are split into chunks converted on both cores with DispatchQueue.concurrentPerform.
// Callers must not run this concurrently with BLAS work (it would fight for the same two cores).

public enum Float16Conversion {
    /// Arrays shorter than this are converted on the calling thread.
    public static let parallelThreshold = 1 << 18
    /// Elements per parallel work item (small enough to balance, big enough to amortize dispatch).
    static let chunkSize = 1 << 18

    // MARK: Scalars

    /// Float32 bits of the IEEE half-precision value with bits `h`. Branch-free so loops vectorize.
    @inlinable @inline(__always)
    public static func f32Bits(fromF16 h16: UInt16) -> UInt32 {
        let h = UInt32(h16)
        let sign = (h & 0x8000) << 16
        let em = h & 0x7fff                            // exponent and mantissa
        let normal = (em << 13) &+ 0x3800_0000         // rebias exponent 15 -> 127
        let infNaN = (em << 13) | 0x7f80_0000          // keeps NaN payloads
        // Subnormal halves (exponent 0) are mantissa * 2^-24, exact in Float32 (also gives +-0).
        let subnormal = (Float(Int32(bitPattern: em)) * 0x1p-24).bitPattern
        var r = em >= 0x7c00 ? infNaN : normal
        r = em < 0x0400 ? subnormal : r
        return r | sign
    }

    /// Half-precision bits of `value`, rounded to nearest even (overflow -> inf, NaN stays NaN).
    @inlinable @inline(__always)
    public static func f16Bits(fromF32 value: Float) -> UInt16 {
        Float16(value).bitPattern
    }

    /// bfloat16 bits of `value`, rounded to nearest even; NaN stays a (quiet) NaN.
    @inlinable @inline(__always)
    public static func bf16Bits(fromF32 value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
        let rounding = 0x7fff &+ ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    // MARK: Bulk, to Float32

    /// Converts `count` IEEE halves at `source` to Float32 at `destination` (both cores when large).
    public static func convertF16ToF32(_ source: UnsafePointer<UInt16>, _ destination: UnsafeMutablePointer<Float>,
                                       count: Int) {
        parallelChunks(count) { start, n in
            f16ToF32Serial(source + start, destination + start, count: n)
        }
    }

    /// Converts `count` bfloat16 values at `source` to Float32 at `destination` (both cores when large).
    public static func convertBF16ToF32(_ source: UnsafePointer<UInt16>, _ destination: UnsafeMutablePointer<Float>,
                                        count: Int) {
        parallelChunks(count) { start, n in
            bf16ToF32Serial(source + start, destination + start, count: n)
        }
    }

    // MARK: Bulk, from Float32

    /// Converts `count` floats to IEEE halves (round to nearest even).
    public static func convertF32ToF16(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<UInt16>,
                                       count: Int) {
        parallelChunks(count) { start, n in
            for i in start..<(start + n) { destination[i] = f16Bits(fromF32: source[i]) }
        }
    }

    /// Converts `count` floats to bfloat16 (round to nearest even).
    public static func convertF32ToBF16(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<UInt16>,
                                        count: Int) {
        parallelChunks(count) { start, n in
            for i in start..<(start + n) { destination[i] = bf16Bits(fromF32: source[i]) }
        }
    }

    // MARK: Kernels

    @inline(never)
    static func f16ToF32Serial(_ source: UnsafePointer<UInt16>, _ destination: UnsafeMutablePointer<Float>,
                               count: Int) {
        destination.withMemoryRebound(to: UInt32.self, capacity: count) { out in
            for i in 0..<count { out[i] = f32Bits(fromF16: source[i]) }
        }
    }

    @inline(never)
    static func bf16ToF32Serial(_ source: UnsafePointer<UInt16>, _ destination: UnsafeMutablePointer<Float>,
                                count: Int) {
        destination.withMemoryRebound(to: UInt32.self, capacity: count) { out in
            for i in 0..<count { out[i] = UInt32(source[i]) << 16 }
        }
    }

    /// Runs `body(start, length)` over `0..<count`, in parallel chunks when `count` is large.
    static func parallelChunks(_ count: Int, _ body: (Int, Int) -> Void) {
        guard count > 0 else { return }
        guard count >= parallelThreshold else { body(0, count); return }
        let chunks = (count + chunkSize - 1) / chunkSize
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let start = c * chunkSize
            body(start, min(chunkSize, count - start))
        }
    }
}
