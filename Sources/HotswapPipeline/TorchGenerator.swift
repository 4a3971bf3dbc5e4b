import Foundation
import HotswapCore

// A port of torch's CPU random generator, as far as `torch.randn(shape, generator=g)` (float32) uses it:
//   aten/src/ATen/core/MT19937RNGEngine.h        mt19937 seeded with the low 32 bits of the seed
//   aten/src/ATen/CPUGeneratorImpl.cpp           random() / random64() and the cached normal sample
//   aten/src/ATen/core/DistributionsHelper.h     uniform_real_distribution, normal_distribution<double>
//   aten/src/ATen/core/TransformationHelper.h    uniform_real: (bits & mask) * 2^-digits
//   aten/src/ATen/native/cpu/DistributionTemplates.h   normal_kernel, normal_fill_16_AVX2
//   aten/src/ATen/native/cpu/avx_mathfun.h       log256_ps, sincos256_ps (Cephes polynomials)
//
// torch picks one of two paths by element count:
// - fewer than 16 elements: Box-Muller in double per element; the sine half is cached in the
//   generator and consumed by the next scalar-path draw, even one in a later randn call.
// - 16 or more (contiguous float): fill every slot with a 24-bit uniform, then transform blocks of
//   16 (slots j and j+8 make one pair); when the count is not a multiple of 16, 16 fresh uniforms
//   replace the last 16 slots and that block is transformed again.
// DistributionKernels.cpp registers normal_stub with REGISTER_NO_AVX512_DISPATCH, so an AVX512 CPU
// (like this project's machines) runs the AVX2 kernel. Its vector log/sin/cos are reproduced lane by
// lane below, including the FMA contractions GCC makes in that kernel (verified bit-exact against
// torch 2.15 on this machine; see TorchGeneratorTests). A CPU without AVX2, or a torch build with
// another compiler, gives results that differ in the last bit for about 1% of the elements.

/// torch.Generator("cpu") for `torch.randn(..., dtype=torch.float32)`.
public struct TorchGenerator: Sendable {
    private var engine: MersenneTwister
    /// The Box-Muller sine half that the scalar path keeps for the next element (next_double_normal_sample).
    private var nextDoubleNormalSample: Double?

    /// `torch.Generator("cpu").manual_seed(seed)`.
    public init(seed: UInt64) {
        engine = MersenneTwister(seed: seed)
        nextDoubleNormalSample = nil
    }

    /// A fresh seed for a render without --seed. torch seeds mt19937 with the low 32 bits only, so
    /// a 32-bit seed keeps every value distinct and short to print.
    public static func randomSeed() -> UInt64 {
        UInt64(UInt32.random(in: .min ... .max))
    }

    /// `torch.randn(shape, generator=self)`: standard normal float32 values, row-major.
    public mutating func randn(_ shape: [Int]) -> Tensor {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        let result = Tensor(zeros: shape)
        let count = Tensor.elementCount(shape)
        if count >= 16 {
            fillNormalVectorized(result.data, count: count)
        } else {
            for i in 0..<count { result.data[i] = Float(nextScalarNormal()) }
        }
        return result
    }

    // MARK: - uniform draws

    /// uniform_real_distribution<float>(0, 1): the low 24 bits of one 32-bit draw.
    private mutating func nextFloatUniform() -> Float {
        Float(engine.next() & 0xFF_FFFF) * 0x1p-24
    }

    /// uniform_real_distribution<double>(0, 1): the low 53 bits of random64() (first draw high).
    private mutating func nextDoubleUniform() -> Double {
        let high = UInt64(engine.next()), low = UInt64(engine.next())
        return Double((high << 32 | low) & (1 << 53 - 1)) * 0x1p-53
    }

    // MARK: - scalar path (fewer than 16 elements)

    /// at::normal_distribution<double>: two uniforms per pair; returns the cosine half first.
    private mutating func nextScalarNormal() -> Double {
        if let cached = nextDoubleNormalSample {
            nextDoubleNormalSample = nil
            return cached
        }
        let u1 = nextDoubleUniform()
        let u2 = nextDoubleUniform()
        let r = (-2.0 * log1p(-u2)).squareRoot()
        let theta = 2.0 * Double.pi * u1
        nextDoubleNormalSample = r * sin(theta)
        return r * cos(theta)
    }

    // MARK: - vectorized path (16 or more elements)

    private mutating func fillNormalVectorized(_ data: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { data[i] = nextFloatUniform() }
        var start = 0
        while start + 16 <= count {
            TorchGenerator.normalFill16(data + start)
            start += 16
        }
        if count % 16 != 0 {
            // torch redraws the whole last block, overwriting normals it already wrote there.
            let tail = data + count - 16
            for i in 0..<16 { tail[i] = nextFloatUniform() }
            TorchGenerator.normalFill16(tail)
        }
    }

    /// normal_fill_16_AVX2 with mean 0 and std 1: slots j and j+8 (j < 8) become one Box-Muller pair.
    private static func normalFill16(_ data: UnsafeMutablePointer<Float>) {
        // _mm256_set1_ps(2.0f * c10::pi<double>): the product is a double, rounded once to float.
        let twoPi = Float(2.0 * Double.pi)
        for j in 0..<8 {
            let u1 = 1 - data[j]  // [0, 1) -> (0, 1] for the log
            let u2 = data[j + 8]
            let radius = (-2 * AVXMathFun.log(u1)).squareRoot()
            let (sine, cosine) = AVXMathFun.sincos(twoPi * u2)
            data[j] = radius * cosine
            data[j + 8] = radius * sine
        }
    }
}

/// at::mt19937: the reference MT19937 (Matsumoto/Nishimura, Cokus' state update) on 32-bit words.
struct MersenneTwister: Sendable {
    private static let n = 624, m = 397
    private static let matrixA: UInt32 = 0x9908_B0DF
    private var state: [UInt32]
    private var left: Int
    private var position: Int

    init(seed: UInt64) {
        var state = [UInt32](repeating: 0, count: MersenneTwister.n)
        state[0] = UInt32(truncatingIfNeeded: seed)  // init_with_uint32 keeps only the low 32 bits
        for j in 1..<MersenneTwister.n {
            state[j] = 1_812_433_253 &* (state[j - 1] ^ (state[j - 1] >> 30)) &+ UInt32(j)
        }
        self.state = state
        left = 1
        position = 0
    }

    mutating func next() -> UInt32 {
        left -= 1
        if left == 0 { regenerate() }
        var y = state[position]
        position += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    private mutating func regenerate() {
        let n = MersenneTwister.n, m = MersenneTwister.m
        state.withUnsafeMutableBufferPointer { s in
            func twist(_ u: UInt32, _ v: UInt32) -> UInt32 {
                let mixed = (u & 0x8000_0000) | (v & 0x7FFF_FFFF)
                return (mixed >> 1) ^ (v & 1 != 0 ? MersenneTwister.matrixA : 0)
            }
            for k in 0..<(n - 1) {
                s[k] = s[(k + m) % n] ^ twist(s[k], s[k + 1])
            }
            s[n - 1] = s[m - 1] ^ twist(s[n - 1], s[0])
        }
        left = n
        position = 0
    }
}

/// One lane of avx_mathfun.h's log256_ps and sincos256_ps as torch's AVX2 kernel computes them.
/// GCC (-mfma, -ffp-contract=fast) fuses some multiply/add pairs of the Cephes polynomials; the
/// `fma` calls below are exactly those fusions, read from the compiled kernel's instruction stream.
enum AVXMathFun {
    private static func fma(_ a: Float, _ b: Float, _ c: Float) -> Float { c.addingProduct(a, b) }

    static func log(_ input: Float) -> Float {
        let invalid = input <= 0
        // Clamp denormals away, then split into exponent e and mantissa x in [0.5, 1).
        let x0 = Swift.max(input, Float(bitPattern: 0x0080_0000))
        let exponentBits = Int32(bitPattern: x0.bitPattern >> 23) &- 0x7F
        var x = Float(bitPattern: (x0.bitPattern & ~0x7F80_0000) | Float(0.5).bitPattern)
        var e = Float(exponentBits) + 1
        // if x < sqrt(1/2): e -= 1, x = x + x - 1 else x = x - 1
        let below = x < Float(0.707106781186547524)
        let tmp: Float = below ? x : 0
        x = x - 1
        e = e - (below ? 1 : 0)
        x = x + tmp

        let z = x * x
        var y = Float(7.0376836292e-2)
        for p in [-1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
                  -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1] as [Float] {
            y = fma(y, x, p)
        }
        y = y * x
        y = fma(y, z, e * Float(-2.12194440e-4))
        y = fma(-z, 0.5, y)
        x = x + y
        x = fma(e, Float(0.693359375), x)
        return invalid ? .nan : x
    }

    static func sincos(_ input: Float) -> (sin: Float, cos: Float) {
        var signSin = input.sign == .minus
        var x = Swift.abs(input)
        // Octant j = (trunc(x * 4/pi) + 1) & ~1, then x reduced by j * pi/4 in three parts.
        var j = Int32(truncatingIfNeeded: Int64(x * Float(1.27323954473516)))
        j = (j &+ 1) & ~1
        let y = Float(j)
        let swapSignSin = j & 4 != 0
        let useSinPolynomialForSin = j & 2 == 0
        x = fma(y, Float(-0.78515625), x)
        x = fma(y, Float(-2.4187564849853515625e-4), x)
        x = fma(y, Float(-3.77489497744594108e-8), x)
        let signCos = ~(j &- 2) & 4 != 0
        signSin = signSin != swapSignSin

        let z = x * x
        // cos polynomial for 0 <= x <= pi/4
        var c = Float(2.443315711809948e-005)
        c = fma(z, c, Float(-1.388731625493765e-003))
        c = fma(z, c, Float(4.166664568298827e-002))
        let half = z * 0.5
        c = z * c
        c = fma(c, z, -half)
        c = c + 1
        // sin polynomial for 0 <= x <= pi/4
        var s = Float(-1.9515295891e-4)
        s = fma(z, s, Float(8.3321608736e-3))
        s = fma(z, s, Float(-1.6666654611e-1))
        s = z * s
        s = fma(x, s, x)

        let sine = useSinPolynomialForSin ? s : c
        let cosine = useSinPolynomialForSin ? c : s
        return (signSin ? -sine : sine, signCos ? -cosine : cosine)
    }
}
