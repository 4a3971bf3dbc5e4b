import HotswapCore
import HotswapModels

/// A layer an adapter can change.
public enum LoRATargetLayer {
    case linear(Linear)
    case conv(Conv2d)

    /// [out, in] or [out, in, kh, kw]
    public var weightShape: [Int] {
        switch self {
        case .linear(let l): return [l.outFeatures, l.inFeatures]
        case .conv(let c): return [c.shape.outChannels, c.shape.inChannels, c.shape.kernelHeight, c.shape.kernelWidth]
        }
    }
    public var baseWeight: Tensor {
        switch self {
        case .linear(let l): return l.baseWeight
        case .conv(let c): return c.baseWeight
        }
    }
    var identity: ObjectIdentifier {
        switch self {
        case .linear(let l): return ObjectIdentifier(l)
        case .conv(let c): return ObjectIdentifier(c)
        }
    }
    /// Points forward at `weight` (the fused buffer, or the base weight to restore).
    func setWeight(_ weight: Tensor) {
        switch self {
        case .linear(let l): l.weight = weight
        case .conv(let c): c.weight = weight
        }
    }
    public var baseBias: Tensor? {
        switch self {
        case .linear(let l): return l.baseBias
        case .conv(let c): return c.baseBias
        }
    }
    /// Points forward at `bias` (base + adapter updates).
    func setBias(_ bias: Tensor?) {
        switch self {
        case .linear(let l): l.bias = bias
        case .conv(let c): c.bias = bias
        }
    }
    func restore() {
        switch self {
        case .linear(let l):
            l.weight = l.baseWeight
            l.bias = l.baseBias
            l.runtimeAdapters = []
        case .conv(let c):
            c.weight = c.baseWeight
            c.bias = c.baseBias
            c.runtimeAdapters = []
        }
    }
}

/// Every layer of a model that adapters may target, by diffusers module path, with the name
/// spellings files use: dotted, kohya's underscores, and (for the UNet) the original SD "sgm"
/// block names (`input_blocks_4_1_...`) mapped as diffusers' `_maybe_map_sgm_blocks_to_diffusers`.
public final class LoRATargets {
    public let unet: [String: LoRATargetLayer]
    public let textEncoder: [String: LoRATargetLayer]
    /// SDXL's text_encoder_2 (empty for SD1.x/2.x).
    public let textEncoder2: [String: LoRATargetLayer]
    /// SD1.x, SD2.x or SDXL, to name in an adapter-for-another-base error.
    public let modelBase: String
    private let unetUnderscored: [String: String]
    private let textEncoderUnderscored: [String: String]
    private let textEncoder2Underscored: [String: String]
    private let layersPerBlock: Int

    public convenience init(model: StableDiffusionModel) {
        self.init(unet: model.unet, textEncoder: model.textEncoder, textEncoder2: model.secondText?.encoder)
    }

    public init(unet: UNet2DConditionModel, textEncoder: CLIPTextModel, textEncoder2: CLIPTextModel? = nil) {
        var u: [String: LoRATargetLayer] = [:]
        for (path, l) in unet.linears { u[path] = .linear(l) }
        for (path, c) in unet.convolutions { u[path] = .conv(c) }
        func linears(_ encoder: CLIPTextModel?) -> [String: LoRATargetLayer] {
            var t: [String: LoRATargetLayer] = [:]
            for (path, l) in encoder?.linears ?? [:] { t[path] = .linear(l) }
            return t
        }
        func underscored(_ t: [String: LoRATargetLayer]) -> [String: String] {
            Dictionary(t.keys.map { ($0.replacingOccurrences(of: ".", with: "_"), $0) }, uniquingKeysWith: { a, _ in a })
        }
        self.unet = u
        self.textEncoder = linears(textEncoder)
        self.textEncoder2 = linears(textEncoder2)
        unetUnderscored = underscored(u)
        textEncoderUnderscored = underscored(self.textEncoder)
        textEncoder2Underscored = underscored(self.textEncoder2)
        layersPerBlock = unet.config.layersPerBlock.expanded(1)[0]
        modelBase = textEncoder2 != nil ? "SDXL" : textEncoder.config.hiddenSize == 1024 ? "SD2.x"
            : textEncoder.config.hiddenSize == 768 ? "SD1.x" : "SD1.x/SD2.x"
    }

    /// The diffusers module path and layer a file's module name refers to, or nil.
    public func resolve(_ entry: AdapterModuleEntry) -> (path: String, layer: LoRATargetLayer)? {
        switch entry.component {
        case .unet:
            if !entry.underscored {
                if let layer = unet[entry.name] { return (entry.name, layer) }
                return nil
            }
            if let path = unetUnderscored[entry.name] ?? unetUnderscored[LoRATargets.sgmToDiffusers(entry.name, layersPerBlock: layersPerBlock) ?? ""] {
                return (path, unet[path]!)
            }
            return nil
        case .textEncoder:
            return Self.resolve(entry, textEncoder, textEncoderUnderscored)
        case .textEncoder2:
            return Self.resolve(entry, textEncoder2, textEncoder2Underscored)
        }
    }

    private static func resolve(_ entry: AdapterModuleEntry, _ layers: [String: LoRATargetLayer],
                                _ underscored: [String: String]) -> (path: String, layer: LoRATargetLayer)? {
        if !entry.underscored { return layers[entry.name].map { (entry.name, $0) } }
        return underscored[entry.name].map { ($0, layers[$0]!) }
    }

    /// Original-SD ("sgm"/LDM) UNet names with underscores -> diffusers names with underscores:
    /// input_blocks_{i}_{j}, middle_block_{i}, output_blocks_{i}_{j}, and inside resnets
    /// in_layers_2 / emb_layers_1 / out_layers_3 / skip_connection. nil when not in that spelling.
    static func sgmToDiffusers(_ name: String, layersPerBlock: Int) -> String? {
        let simple = ["time_embed_0": "time_embedding_linear_1", "time_embed_2": "time_embedding_linear_2",
                      "out_2": "conv_out", "input_blocks_0_0": "conv_in"]
        if let mapped = simple[name] { return mapped }
        var parts = name.split(separator: "_").map(String.init)
        func int(_ i: Int) -> Int? { i < parts.count ? Int(parts[i]) : nil }
        var head: [String]
        var tailStart: Int
        if parts.count > 3, parts[0] == "input", parts[1] == "blocks", let i = int(2), let j = int(3) {
            if i == 0 { return nil }
            let block = (i - 1) / (layersPerBlock + 1), layer = (i - 1) % (layersPerBlock + 1)
            if parts.count > 4, parts[4] == "op" {
                head = ["down", "blocks", "\(block)", "downsamplers", "0", "conv"]; tailStart = 5
            } else {
                head = ["down", "blocks", "\(block)", j == 0 ? "resnets" : "attentions", "\(layer)"]; tailStart = 4
            }
        } else if parts.count > 2, parts[0] == "middle", parts[1] == "block", let i = int(2) {
            switch i {
            case 0: head = ["mid", "block", "resnets", "0"]
            case 1: head = ["mid", "block", "attentions", "0"]
            case 2: head = ["mid", "block", "resnets", "1"]
            default: return nil
            }
            tailStart = 3
        } else if parts.count > 3, parts[0] == "output", parts[1] == "blocks", let i = int(2), let j = int(3) {
            let block = i / (layersPerBlock + 1), layer = i % (layersPerBlock + 1)
            // j: 0 resnet, 1 attention (or upsampler when the block has no attention), 2 upsampler
            let isUpsampler = j == 2 || (j == 1 && parts.count > 4 && parts[4] == "conv")
            head = isUpsampler ? ["up", "blocks", "\(block)", "upsamplers", "0"]
                : ["up", "blocks", "\(block)", j == 0 ? "resnets" : "attentions", "\(layer)"]
            tailStart = 4
        } else {
            return nil
        }
        var tail = Array(parts[tailStart...]).joined(separator: "_")
        for (old, new) in [("in_layers_2", "conv1"), ("emb_layers_1", "time_emb_proj"), ("out_layers_3", "conv2"),
                           ("skip_connection", "conv_shortcut")] where tail == old {
            tail = new
        }
        parts = head
        return tail.isEmpty ? head.joined(separator: "_") : head.joined(separator: "_") + "_" + tail
    }
}
