import CKernels

/// In-place activation functions over contiguous floats (vectorized in CKernels).
public enum Activation: String, Sendable {
    case silu
    case gelu          // exact form, erf as torch's vectorized CPU kernel computes it
    case quickGelu     // x * sigmoid(1.702 x), CLIP's "quick_gelu"
    case geluTanh      // "gelu_pytorch_tanh" / approximate="tanh"

    public func apply(_ x: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .silu: hs_silu(x, count)
        case .gelu: hs_gelu(x, count)
        case .quickGelu: hs_quick_gelu(x, count)
        case .geluTanh: hs_gelu_tanh(x, count)
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
    public static func silu(_ x: UnsafeMutablePointer<Float>, count: Int) { hs_silu(x, count) }
    public static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) { hs_gelu(x, count) }

    /// GEGLU: x [rows, 2 * inner] -> y [rows, inner] = hidden * gelu(gate), hidden the first half.
    public static func geglu(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, inner: Int) {
        hs_geglu(x, y, rows, inner)
    }
}

public enum Softmax {
    /// x = exp(x), vectorized.
    public static func expInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) { hs_exp(x, count) }

    /// Softmax over the first `visible` entries of a row; entries past it are set to 0.
    public static func row(_ row: UnsafeMutablePointer<Float>, visible: Int, count: Int) {
        hs_softmax_row(row, visible, count)
    }
}
