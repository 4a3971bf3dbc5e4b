#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// In-place activation functions over contiguous floats, vectorized 16 lanes at a time.
public enum Activation: String, Sendable {
    case silu
    case gelu          // exact, erf-based (torch.nn.functional.gelu default)
    case quickGelu     // x * sigmoid(1.702 x), CLIP's "quick_gelu"
    case geluTanh      // "gelu_pytorch_tanh" / approximate="tanh"

    public func apply(_ x: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .silu: Activations.silu(x, count: count)
        case .gelu: Activations.gelu(x, count: count)
        case .quickGelu: Activations.quickGelu(x, count: count)
        case .geluTanh: Activations.geluTanh(x, count: count)
        }
    }

    /// Parses the activation names used in diffusers/transformers configs.
    public init?(configName: String) {
        switch configName {
        case "silu", "swish": self = .silu
        case "gelu": self = .gelu
        case "quick_gelu": self = .quickGelu
        case "gelu_pytorch_tanh", "gelu_new", "gelu_fast": self = .geluTanh
        default: return nil
        }
    }
}

public enum Activations {
    /// Applies `vector` to 16-lane chunks and `scalar` to the tail.
    @inline(__always)
    static func map(_ x: UnsafeMutablePointer<Float>, count: Int,
                    _ vector: (FloatVector) -> FloatVector) {
        let lanes = FloatVector.scalarCount
        var i = 0
        let raw = UnsafeMutableRawPointer(x)
        while i + lanes <= count {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: FloatVector.self)
            raw.storeBytes(of: vector(v), toByteOffset: i * 4, as: FloatVector.self)
            i += lanes
        }
        if i < count {
            var tail = FloatVector()
            for j in 0..<(count - i) { tail[j] = x[i + j] }
            let result = vector(tail)
            for j in 0..<(count - i) { x[i + j] = result[j] }
        }
    }

    public static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        map(x, count: count) { v in v / (1 + vexp(-v)) }
    }

    public static func quickGelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        map(x, count: count) { v in v / (1 + vexp(-1.702 * v)) }
    }

    public static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        map(x, count: count) { v in 0.5 * v * (1 + verf(v * 0.70710678118654752)) }
    }

    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, count: Int) {
        // tanh(u) = 1 - 2 / (exp(2u) + 1)
        map(x, count: count) { v in
            let u = 0.79788456080286535 * (v + 0.044715 * v * v * v)
            let t = 1 - 2 / (vexp(2 * u) + 1)
            return 0.5 * v * (1 + t)
        }
    }
}
