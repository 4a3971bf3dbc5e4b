import Foundation

/// One adapter of a request: a name in the adapters directory (without `.safetensors`) or a path,
/// and the request's scale (the LoRA weight; the file's alpha / rank multiplies it).
public struct AdapterSpec: Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var scale: Float

    public init(name: String, scale: Float = 1) {
        self.name = name
        self.scale = scale
    }

    /// `NAME_OR_PATH` or `NAME_OR_PATH:SCALE` (the last ':' followed by a number splits).
    public init(parsing text: String) throws {
        if let colon = text.lastIndex(of: ":"), let scale = Float(text[text.index(after: colon)...]) {
            let name = String(text[..<colon])
            guard !name.isEmpty else { throw LoRAError.invalidSpec(text) }
            self.init(name: name, scale: scale)
        } else {
            guard !text.isEmpty else { throw LoRAError.invalidSpec(text) }
            self.init(name: text, scale: 1)
        }
    }

    public var description: String { "\(name):\(AdapterSpec.formatScale(scale))" }

    /// The same adapter as the infotext and the timing rows name it: the file name without folder
    /// or `.safetensors`, and the scale.
    public var displayDescription: String { "\(AdapterManager.displayName(name)):\(AdapterSpec.formatScale(scale))" }

    /// The largest |scale| a request may use an adapter at (the CLI's and the API's limit; the
    /// value check of adapter files bounds updates at this scale).
    public static let maxScale: Float = 16

    /// Shortest text for a scale: 1, 0.75, 1.3 (Float's shortest round-trip form).
    public static func formatScale(_ x: Float) -> String {
        if x == x.rounded(), abs(x) < 1e7 { return String(Int(x)) }
        return "\(x)"
    }
}

/// How adapters act on the model.
public enum LoRAMode: String, Sendable, CaseIterable {
    /// weight = base + sum(scale * B A) in a separate buffer per layer (fast inference).
    case fuse
    /// y = W x + scale * B (A x) at every call; weights never touched.
    case runtime
}
