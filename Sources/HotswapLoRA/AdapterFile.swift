import Foundation
import HotswapModels

/// What one tensor of an adapter module is (kohya / LyCORIS / PEFT names in the comments).
public enum AdapterTensorRole: String, Sendable, CaseIterable {
    case down                   // lora_down.weight, lora_A.weight
    case up                     // lora_up.weight, lora_B.weight
    case alpha                  // alpha
    case mid                    // lora_mid.weight: LoCon's Tucker core [r, r, kh, kw]
    case upBias                 // lora_up.bias, lora_B.bias
    case hadaW1A = "hada_w1_a", hadaW1B = "hada_w1_b", hadaW2A = "hada_w2_a", hadaW2B = "hada_w2_b"
    case hadaT1 = "hada_t1", hadaT2 = "hada_t2"
    case lokrW1 = "lokr_w1", lokrW1A = "lokr_w1_a", lokrW1B = "lokr_w1_b"
    case lokrW2 = "lokr_w2", lokrW2A = "lokr_w2_a", lokrW2B = "lokr_w2_b", lokrT2 = "lokr_t2"
    case diff                   // diff: a full weight difference
    case diffBias = "diff_b"    // diff_b: a full bias difference
    case doraScale = "dora_scale"            // kohya / LyCORIS DoRA magnitude
    case magnitude = "lora_magnitude_vector" // PEFT DoRA magnitude
}

/// The update a module makes to its layer's weight (LyCORIS' algorithms).
public enum AdapterModuleKind: String, Sendable {
    case lora       // up @ down (LoCon with a k x k down or a Tucker mid core included)
    case loha       // (w1a @ w1b) * (w2a @ w2b), Hadamard product
    case lokr       // kron(w1, w2)
    case diff       // a full difference (diff / diff_b)
}

/// One adapter module of a file, as the file names it, before it is matched to a model layer.
public struct AdapterModuleEntry: Sendable {
    public let component: LoRAComponent
    /// The module name as written: dotted (`down_blocks.0.attentions.0...to_q`) for diffusers
    /// layouts, with underscores for kohya (`down_blocks_0_attentions_0_..._to_q`). The text
    /// encoder's `text_model.` / `text_model_` prefix is already removed.
    public let name: String
    public let underscored: Bool
    /// Every tensor of the module by role: its key and shape.
    public var tensors: [AdapterTensorRole: TensorRef] = [:]
    /// The file's own alpha for this module (kohya `.alpha`), if any.
    public var alpha: Float?

    public struct TensorRef: Sendable {
        public let key: String
        public let shape: [Int]
    }

    public var downKey: String? { tensors[.down]?.key }
    public var upKey: String? { tensors[.up]?.key }
    public var alphaKey: String? { tensors[.alpha]?.key }
    public var downShape: [Int] { tensors[.down]?.shape ?? [] }
    public var upShape: [Int] { tensors[.up]?.shape ?? [] }
    public func shape(_ role: AdapterTensorRole) -> [Int]? { tensors[role]?.shape }

    static let lohaRoles: Set<AdapterTensorRole> = [.hadaW1A, .hadaW1B, .hadaW2A, .hadaW2B, .hadaT1, .hadaT2]
    static let lokrRoles: Set<AdapterTensorRole> = [.lokrW1, .lokrW1A, .lokrW1B, .lokrW2, .lokrW2A, .lokrW2B, .lokrT2]
    static let loraRoles: Set<AdapterTensorRole> = [.down, .up, .mid, .upBias]

    /// The algorithm, or nil when the module mixes several (or has only a magnitude / alpha).
    public var kind: AdapterModuleKind? {
        let roles = Set(tensors.keys)
        let families = [(AdapterModuleKind.loha, Self.lohaRoles), (.lokr, Self.lokrRoles), (.lora, Self.loraRoles),
                        (.diff, [.diff] as Set<AdapterTensorRole>)].filter { !roles.isDisjoint(with: $0.1) }
        if families.count == 1 { return families[0].0 }
        // A bias difference alone, or with a full difference.
        if families.isEmpty && roles.contains(.diffBias) { return .diff }
        return nil
    }

    /// Whether it has a DoRA magnitude (kohya `dora_scale` or PEFT `lora_magnitude_vector`).
    public var isDoRA: Bool { tensors[.doraScale] != nil || tensors[.magnitude] != nil }

    /// Whether its weight update has no low-rank form (LoHa, LoKr, a full diff, DoRA), so it can
    /// only be fused, never applied at runtime. Bias-only updates apply either way.
    public var fusesOnly: Bool {
        switch kind {
        case .loha, .lokr: return true
        case .diff: return isDoRA || tensors[.diff] != nil
        case .lora, nil: return isDoRA
        }
    }

    /// The rank alpha is divided by: LoRA's down rank, LoHa's w1b rows, LoKr's decomposed factor's
    /// rank (w2 first, as ComfyUI and A1111); nil where alpha does not apply (full LoKr factors, diffs).
    public var rank: Int? {
        switch kind {
        case .lora: return downShape.first
        case .loha: return shape(.hadaW1B)?.first
        case .lokr: return shape(.lokrW2B)?.first ?? shape(.lokrW1B)?.first
        case .diff, nil: return nil
        }
    }

    /// Parameters in every tensor but alpha.
    public var parameterCount: Int {
        tensors.filter { $0.key != .alpha }.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
    }
    /// A k x k (k > 1) convolution, as far as the tensors tell.
    public var isConvolution: Bool {
        [AdapterTensorRole.down, .mid, .hadaT1, .lokrT2, .lokrW2, .diff].contains { role in
            guard let s = shape(role), s.count == 4 else { return false }
            return s[2] > 1 || s[3] > 1
        }
    }
    /// The layer's input width the tensors imply (for guessing the base model), when they tell it.
    public var inputWidth: Int? {
        if let s = shape(.down), s.count >= 2 { return s[1] }
        if let s = shape(.hadaW1B), s.count >= 2, shape(.hadaT1) != nil { return s[1] }
        if let s = shape(.hadaW1B), s.count == 2 { return s[1] }
        if let s = shape(.diff), s.count >= 2 { return s[1] }
        return nil
    }
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
    /// Keys in no layout this reader knows.
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
            if entries[id]!.tensors[parsed.role] != nil { unsupported.append(key); continue }   // the same role twice
            entries[id]!.tensors[parsed.role] = AdapterModuleEntry.TensorRef(key: key, shape: shape)
            if parsed.role == .alpha {
                guard shape.reduce(1, *) == 1, let value = try? safetensors.tensor(key).scalars.first else {
                    entries[id]!.tensors[.alpha] = nil
                    unsupported.append(key)
                    continue
                }
                entries[id]!.alpha = value
            }
        }
        modules = order.map { entries[$0]! }
        unsupportedKeys = unsupported
        var configs: [LoRAComponent: PEFTConfig] = [:]
        for component in [LoRAComponent.unet, .textEncoder, .textEncoder2] {
            if let config = PEFTConfig(metadata: safetensors.metadata, component: component) { configs[component] = config }
        }
        peftConfigs = configs
        if formats.contains(.kohya), modules.contains(where: { $0.kind == .lora && $0.isConvolution }) {
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
        // Full differences and full LoKr factors: no rank, alpha ignored (ComfyUI, A1111, diffusers).
        guard let rank = entry.rank else { return (1, 0, 1) }
        if let alpha = entry.alpha {
            // LyCORIS writes alpha 0 (or none) for "alpha = rank".
            if entry.kind != .lora && alpha == 0 { return (Float(rank), rank, 1) }
            return (alpha, rank, alpha / Float(rank))
        }
        if let config = peftConfigs[entry.component] {
            let r = config.rank(for: modulePath) ?? rank
            let alpha = config.alpha(for: modulePath) ?? Float(r)
            let scale = config.useRSLoRA ? alpha / Float(r).squareRoot() : alpha / Float(r)
            return (alpha, r, scale)
        }
        return (Float(rank), rank, 1)
    }

    // MARK: Key classification

    struct ParsedKey {
        let component: LoRAComponent
        let name: String
        let underscored: Bool
        let role: AdapterTensorRole
        let format: AdapterFormat
    }

    /// kohya / LyCORIS key suffixes after the module name.
    static let kohyaSuffixes: [String: AdapterTensorRole] = [
        "lora_down.weight": .down, "lora_up.weight": .up, "alpha": .alpha, "lora_mid.weight": .mid,
        "lora_up.bias": .upBias, "hada_w1_a": .hadaW1A, "hada_w1_b": .hadaW1B, "hada_w2_a": .hadaW2A,
        "hada_w2_b": .hadaW2B, "hada_t1": .hadaT1, "hada_t2": .hadaT2, "lokr_w1": .lokrW1, "lokr_w1_a": .lokrW1A,
        "lokr_w1_b": .lokrW1B, "lokr_w2": .lokrW2, "lokr_w2_a": .lokrW2A, "lokr_w2_b": .lokrW2B, "lokr_t2": .lokrT2,
        "diff": .diff, "diff_b": .diffBias, "dora_scale": .doraScale,
    ]

    /// Splits a key into component, module name and role, or nil for keys of other layouts.
    static func classify(_ key: String) -> ParsedKey? {
        // kohya / A1111
        for (prefix, component) in [("lora_unet_", LoRAComponent.unet), ("lora_te_", .textEncoder),
                                    ("lora_te1_", .textEncoder), ("lora_te2_", .textEncoder2)] where key.hasPrefix(prefix) {
            guard let dot = key.firstIndex(of: ".") else { return nil }
            var name = String(key[key.index(key.startIndex, offsetBy: prefix.count)..<dot])
            guard let role = kohyaSuffixes[String(key[key.index(after: dot)...])] else { return nil }
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
        let suffixes: [(String, AdapterTensorRole, AdapterFormat)] = [
            (".lora_A.weight", .down, .peft), (".lora_B.weight", .up, .peft), (".lora_B.bias", .upBias, .peft),
            (".lora_magnitude_vector.weight", .magnitude, .peft), (".lora_magnitude_vector", .magnitude, .peft),
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
