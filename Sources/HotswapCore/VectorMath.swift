// Vectorized transcendental functions for the elementwise kernels (softmax, SiLU, GELU).
// glibc's scalar expf/erff cost ~5-10 ns each; attention alone needs ~10^9 exps per image.
// Accuracy: exp within ~2 ulp over the float range (Cephes polynomial), erf within ~1e-7 absolute.

public typealias FloatVector = SIMD16<Float>

@inline(__always)
public func vexp(_ x: FloatVector) -> FloatVector {
    // exp(x) = 2^n * exp(r), x = n*ln2 + r, |r| <= ln2/2.
    let clamped = x.clamped(lowerBound: FloatVector(repeating: -87.3), upperBound: FloatVector(repeating: 88.3))
    let n = (clamped * 1.44269504088896341 + 0.5).rounded(.down)
    // ln2 split in two parts so that n * ln2 is exact enough.
    var r = clamped - n * 0.693359375
    r = r - n * -2.12194440e-4
    var p = FloatVector(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let r2 = r * r
    let expR = p * r2 + r + 1
    let exponentBits = SIMD16<UInt32>(truncatingIfNeeded: SIMD16<Int32>(n) &+ 127) &<< 23
    let scale = unsafeBitCast(exponentBits, to: FloatVector.self)
    var result = expR * scale
    // Below the clamp the true value underflows to 0 (matters for masked softmax logits).
    result.replace(with: 0, where: x .< -87.3)
    return result
}

@inline(__always)
func vexpScalar(_ x: Float) -> Float {
    vexp(FloatVector(repeating: x))[0]
}

/// erf(x) lane by lane through libm's erff (exact to float precision; a vectorized version is a
/// performance item, not a correctness one).
@inline(__always)
public func verf(_ x: FloatVector) -> FloatVector {
    var result = FloatVector()
    for lane in 0..<FloatVector.scalarCount {
        result[lane] = erff(x[lane])
    }
    return result
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
