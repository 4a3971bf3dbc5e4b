import Foundation

/// Why an adapter cannot be used. Every case names the file and, where it applies, the keys,
/// the layer and the shapes involved. Thrown before any layer is touched: the active set is
/// unchanged after any of these.
public enum LoRAError: Error, CustomStringConvertible, Equatable {
    /// A name that is neither a file in the adapters directory nor a path.
    case unknownAdapter(name: String, directory: String?, available: [String])
    /// The file cannot be opened or is not valid safetensors (the reader's message).
    case unreadable(file: String, reason: String)
    /// Keys in no LoRA layout Hotswap reads (LoHa, LoKr, DoRA, bias terms, full weights, ...).
    case unsupportedKeys(file: String, keys: [String])
    /// Keys whose module is not in this model (e.g. an SDXL adapter's `lora_te2_` keys on SD1.5).
    /// `bases`: "made for SD1.x; this model is SDXL" when the adapter's base is known and another.
    case unmatchedKeys(file: String, keys: [String], matched: Int, bases: String? = nil)
    /// A down weight without its up weight or the other way round.
    case incompletePair(file: String, module: String, missing: String)
    /// Down/up weights whose shapes do not fit the layer they target.
    case shapeMismatch(file: String, problems: [ShapeProblem])
    /// No LoRA weights at all.
    case empty(file: String)
    /// A request scale that is not a finite number.
    case invalidScale(name: String, scale: Float)
    /// A `NAME[:SCALE]` argument that does not parse.
    case invalidSpec(String)
    /// A value that cannot be applied: a non-finite weight, alpha or rank, or an update so large
    /// that the fused weight would overflow Float32. Names the tensor.
    case invalidValues(file: String, key: String, reason: String)
    /// A LoHa, LoKr, full-diff or DoRA adapter asked for in runtime mode, which applies only
    /// low-rank updates.
    case fuseOnly(file: String, kind: String)

    public struct ShapeProblem: Equatable, Sendable, CustomStringConvertible {
        public let module: String
        public let layerShape: [Int]
        /// The adapter's tensors, e.g. "lora down [4, 768], up [320, 4]" or "hada_w1_a [320, 8], ...".
        public let detail: String
        public var description: String { "\(module): layer weight \(layerShape), \(detail)" }
    }

    static func list(_ items: [String], limit: Int = 8) -> String {
        let shown = items.prefix(limit).joined(separator: ", ")
        return items.count > limit ? "\(shown), ... (\(items.count) in all)" : shown
    }

    public var description: String {
        switch self {
        case .unknownAdapter(let name, let directory, let available):
            let where_ = directory.map { " in \($0)" } ?? ""
            let known = available.isEmpty ? "none available" : "available: \(LoRAError.list(available, limit: 20))"
            return "unknown adapter '\(name)'\(where_) (\(known))"
        case .unreadable(let file, let reason):
            return "cannot read adapter \(file): \(reason)"
        case .unsupportedKeys(let file, let keys):
            return "adapter \(file) has \(keys.count) keys in no supported LoRA layout: \(LoRAError.list(keys))"
        case .unmatchedKeys(let file, let keys, let matched, let bases):
            return "adapter \(file) does not fit this model\(bases.map { " (\($0))" } ?? ""): \(keys.count) keys match no layer (\(matched) did): \(LoRAError.list(keys))"
        case .incompletePair(let file, let module, let missing):
            return "adapter \(file): layer \(module) lacks \(missing)"
        case .shapeMismatch(let file, let problems):
            return "adapter \(file) does not fit this model: \(problems.count) layers have other shapes: \(LoRAError.list(problems.map(\.description), limit: 4))"
        case .empty(let file):
            return "adapter \(file) holds no LoRA weights"
        case .invalidScale(let name, let scale):
            return "adapter '\(name)': scale must be a finite number, got \(scale)"
        case .invalidSpec(let text):
            return "cannot parse adapter '\(text)': expected NAME_OR_PATH or NAME_OR_PATH:SCALE"
        case .invalidValues(let file, let key, let reason):
            return "adapter \(file): \(key) \(reason)"
        case .fuseOnly(let file, let kind):
            return "adapter \(file) is \(kind), which applies only fused into the weights; run with --lora-mode fuse"
        }
    }
}

extension LoRAError: LocalizedError {
    public var errorDescription: String? { description }
}

extension LoRAError {
    /// A short stable code for logs, the timings database and HTTP error bodies.
    public var code: String {
        switch self {
        case .unknownAdapter: return "adapter_not_found"
        case .unreadable: return "adapter_unreadable"
        case .unsupportedKeys: return "adapter_unsupported"
        case .unmatchedKeys, .shapeMismatch, .incompletePair: return "adapter_mismatch"
        case .empty: return "adapter_empty"
        case .invalidScale, .invalidSpec: return "adapter_invalid_spec"
        case .invalidValues: return "adapter_invalid_values"
        case .fuseOnly: return "adapter_fuse_only"
        }
    }
}
