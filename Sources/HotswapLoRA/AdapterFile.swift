import Foundation
import HotswapModels

/// One LoRA module of a file, as the file names it, before it is matched to a model layer.
public struct AdapterModuleEntry: Sendable {
    public let component: LoRAComponent
    /// The module name as written: dotted (`down_blocks.0.attentions.0...to_q`) for diffusers
    /// layouts, with underscores for kohya (`down_blocks_0_attentions_0_..._to_q`). The text
    /// encoder's `text_model.` / `text_model_` prefix is already removed.
    public let name: String
    public let underscored: Bool
    public var downKey: String?
    public var upKey: String?
    public var alphaKey: String?
    public var downShape: [Int] = []
    public var upShape: [Int] = []
    /// The file's own alpha for this module (kohya `.alpha`), if any.
    public var alpha: Float?

    public var rank: Int { downShape.first ?? 0 }
    /// Parameters in the down and up weights.
    public var parameterCount: Int { downShape.reduce(1, *) + upShape.reduce(1, *) }
    /// A 3x3 (or any k x k, k > 1) convolution down weight.
    public var isConvolution: Bool { downShape.count == 4 && (downShape[2] > 1 || downShape[3] > 1) }
    public var id: String { "\(component.rawValue):\(name)" }
}

/// A LoRA safetensors file read and sorted by module, independent of any model: which keys are
/// which module's down/up/alpha, ranks, alphas and the PEFT metadata. Reads the header only;
/// tensors are read when the adapter is loaded for a model.
public final class AdapterFile {
    public let url: URL
    public let safetensors: SafeTensorsFile
    public let format: AdapterFormat
    public let modules: [AdapterModuleEntry]
    /// Keys in no layout this reader knows (LoHa `hada_`, LoKr, DoRA magnitudes, ...).
    public let unsupportedKeys: [String]
    /// PEFT LoraConfig fields per component, from the file's metadata.
    public let peftConfigs: [LoRAComponent: PEFTConfig]

    public var metadata: [String: String] { safetensors.metadata }
    public var fileSize: Int { safetensors.fileSize }

    public init(url: URL) throws {
        self.url = url
        do {
            safetensors = try SafeTensorsFile(url: url)
        } catch {
            throw LoRAError.unreadable(file: url.path, reason: "\(error)")
        }
        var entries: [String: AdapterModuleEntry] = [:]
        var order: [String] = []
        var unsupported: [String] = []
        var formats: Set<AdapterFormat> = []
        for key in safetensors.names {
            guard let parsed = AdapterFile.classify(key) else {
                unsupported.append(key)
                continue
            }
            formats.insert(parsed.format)
            let id = "\(parsed.component.rawValue):\(parsed.name)"
            if entries[id] == nil {
                entries[id] = AdapterModuleEntry(component: parsed.component, name: parsed.name, underscored: parsed.underscored)
                order.append(id)
            }
            let shape = safetensors.infos[key]!.shape
            switch parsed.role {
            case .down:
                if entries[id]!.downKey != nil { unsupported.append(key); continue }
                entries[id]!.downKey = key
                entries[id]!.downShape = shape
            case .up:
                if entries[id]!.upKey != nil { unsupported.append(key); continue }
                entries[id]!.upKey = key
                entries[id]!.upShape = shape
            case .alpha:
                entries[id]!.alphaKey = key
                guard shape.reduce(1, *) == 1, let value = try? safetensors.tensor(key).scalars.first else {
                    unsupported.append(key)
                    continue
                }
                entries[id]!.alpha = value
            }
        }
        modules = order.map { entries[$0]! }
        unsupportedKeys = unsupported
        var configs: [LoRAComponent: PEFTConfig] = [:]
        for component in [LoRAComponent.unet, .textEncoder] {
            if let config = PEFTConfig(metadata: safetensors.metadata, component: component) { configs[component] = config }
        }
        peftConfigs = configs
        if formats.contains(.kohya), modules.contains(where: \.isConvolution) {
            format = .kohyaLoCon
        } else if formats.contains(.kohya) {
            format = .kohya
        } else if formats.contains(.diffusersAttnProcessor) {
            format = .diffusersAttnProcessor
        } else if formats.contains(.peft) || formats.isEmpty {
            format = .peft
        } else {
            format = .diffusersLoRALayer
        }
    }

    /// The scale factor alpha / rank (or alpha / sqrt(rank) with rsLoRA) of one module, as
    /// diffusers/PEFT compute it: the file's `.alpha` tensor, else the PEFT metadata (with its
    /// rank_pattern / alpha_pattern), else alpha = rank.
    public func alphaAndRank(_ entry: AdapterModuleEntry, modulePath: String) -> (alpha: Float, rank: Int, scale: Float) {
        let rank = entry.rank
        if let alpha = entry.alpha { return (alpha, rank, alpha / Float(rank)) }
        if let config = peftConfigs[entry.component] {
            let r = config.rank(for: modulePath) ?? rank
            let alpha = config.alpha(for: modulePath) ?? Float(r)
            let scale = config.useRSLoRA ? alpha / Float(r).squareRoot() : alpha / Float(r)
            return (alpha, r, scale)
        }
        return (Float(rank), rank, 1)
    }

    // MARK: Key classification

    enum Role { case down, up, alpha }
    struct ParsedKey {
        let component: LoRAComponent
        let name: String
        let underscored: Bool
        let role: Role
        let format: AdapterFormat
    }

    /// Splits a key into component, module name and role, or nil for keys of other layouts.
    static func classify(_ key: String) -> ParsedKey? {
        // kohya / A1111
        for (prefix, component) in [("lora_unet_", LoRAComponent.unet), ("lora_te_", .textEncoder),
                                    ("lora_te1_", .textEncoder), ("lora_te2_", .textEncoder2)] where key.hasPrefix(prefix) {
            guard let dot = key.firstIndex(of: ".") else { return nil }
            var name = String(key[key.index(key.startIndex, offsetBy: prefix.count)..<dot])
            let suffix = key[key.index(after: dot)...]
            let role: Role
            switch suffix {
            case "lora_down.weight": role = .down
            case "lora_up.weight": role = .up
            case "alpha": role = .alpha
            default: return nil
            }
            if component != .unet, name.hasPrefix("text_model_") { name.removeFirst("text_model_".count) }
            return ParsedKey(component: component, name: name, underscored: true, role: role, format: .kohya)
        }
        // diffusers layouts: [unet. | text_encoder. | text_encoder_2.]<module>.<lora suffix>
        var rest = Substring(key)
        var component = LoRAComponent.unet
        for (prefix, c) in [("unet.", LoRAComponent.unet), ("text_encoder_2.", .textEncoder2), ("text_encoder.", .textEncoder)]
            where rest.hasPrefix(prefix) {
            component = c
            rest = rest.dropFirst(prefix.count)
            break
        }
        let suffixes: [(String, Role, AdapterFormat)] = [
            (".lora_A.weight", .down, .peft), (".lora_B.weight", .up, .peft),
            (".lora.down.weight", .down, .diffusersLoRALayer), (".lora.up.weight", .up, .diffusersLoRALayer),
            (".lora_linear_layer.down.weight", .down, .diffusersLoRALayer),
            (".lora_linear_layer.up.weight", .up, .diffusersLoRALayer),
            ("_lora.down.weight", .down, .diffusersAttnProcessor), ("_lora.up.weight", .up, .diffusersAttnProcessor),
            (".alpha", .alpha, .peft),
        ]
        for (suffix, role, format) in suffixes where rest.hasSuffix(suffix) {
            var name = String(rest.dropLast(suffix.count))
            if component != .unet, name.hasPrefix("text_model.") { name.removeFirst("text_model.".count) }
            if format == .diffusersAttnProcessor || name.contains(".processor.") {
                name = name.replacingOccurrences(of: ".processor.", with: ".")
            }
            if format == .diffusersAttnProcessor {
                // to_q_lora -> to_q (UNet) / q_proj (text encoder); to_out_lora -> to_out.0 / out_proj
                let map: [String: String] = component == .unet
                    ? ["to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out": "to_out.0"]
                    : ["to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out": "out_proj"]
                guard let dot = name.lastIndex(of: "."), let mapped = map[String(name[name.index(after: dot)...])] else {
                    return nil
                }
                name = name[..<dot] + "." + mapped
            }
            guard !name.isEmpty else { return nil }
            return ParsedKey(component: component, name: name, underscored: false, role: role, format: format)
        }
        return nil
    }
}
