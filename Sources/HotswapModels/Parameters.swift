import HotswapCore

/// Hands out a checkpoint's tensors to the layers that a config builds, by diffusers parameter
/// name, and remembers what went wrong instead of stopping at the first problem: after building,
/// `finish()` throws one error listing every missing, unexpected and wrongly shaped weight.
/// Layers register themselves under their module path so adapters can find them later.
public final class Parameters {
    public let component: String
    private var tensors: [String: Tensor]
    private var used: Set<String> = []
    private var missing: [String] = []
    private var wrongShape: [String] = []
    /// Prefixes of weights that belong to the checkpoint but to parts we do not build
    /// (e.g. the VAE encoder for txt2img); they are accepted and never read.
    private var ignoredPrefixes: [String] = []
    public private(set) var linears: [String: Linear] = [:]
    public private(set) var convolutions: [String: Conv2d] = [:]

    public init(component: String, tensors: [String: Tensor]) {
        self.component = component
        self.tensors = tensors
    }

    public func ignore(prefix: String) { ignoredPrefixes.append(prefix) }

    public func contains(_ name: String) -> Bool { tensors[name] != nil }

    /// The tensor called `name`, which must have `shape`; a zero tensor of that shape (and a recorded
    /// problem) otherwise, so that building can go on and report everything at once.
    public func take(_ name: String, shape: [Int]) -> Tensor {
        guard let tensor = tensors[name] else {
            missing.append("\(name) \(shape)")
            return Tensor(zeros: shape)
        }
        used.insert(name)
        if tensor.shape == shape { return tensor }
        // 1x1 convolutions and linear layers are interchangeable in some checkpoints.
        if tensor.count == Tensor.elementCount(shape),
           tensor.shape.filter({ $0 != 1 }) == shape.filter({ $0 != 1 }) {
            return tensor.reshaped(shape)
        }
        wrongShape.append("\(name) is \(tensor.shape), expected \(shape)")
        return Tensor(zeros: shape)
    }

    func register(_ linear: Linear, at path: String) { linears[path] = linear }
    func register(_ conv: Conv2d, at path: String) { convolutions[path] = conv }

    /// Throws if any weight was missing, unused or of the wrong shape.
    public func finish() throws {
        let unexpected = tensors.keys.filter { name in
            !used.contains(name) && !ignoredPrefixes.contains(where: { name.hasPrefix($0) })
        }.sorted()
        if !missing.isEmpty || !unexpected.isEmpty || !wrongShape.isEmpty {
            throw ModelLoadingError.weightMismatch(component: component, missing: missing,
                                                   unexpected: unexpected, wrongShape: wrongShape)
        }
    }
}

/// A module path inside a model (e.g. "down_blocks.0.resnets.1"), used to name its parameters.
public struct ModulePath: Sendable, CustomStringConvertible {
    public let components: [String]
    public init(_ components: [String] = []) { self.components = components }
    public func callAsFunction(_ child: String) -> ModulePath { ModulePath(components + [child]) }
    public func callAsFunction(_ child: String, _ index: Int) -> ModulePath { ModulePath(components + [child, String(index)]) }
    /// An item of an nn.Sequential: "layers.3".
    public func callAsFunction(_ index: Int) -> ModulePath { ModulePath(components + [String(index)]) }
    public var description: String { components.joined(separator: ".") }
    public func parameter(_ name: String) -> String { (components + [name]).joined(separator: ".") }
}
