import Foundation

/// What `hotswap adapters list/inspect` and the server show about an adapter file.
public struct AdapterInfo: Sendable, Codable, Equatable {
    /// File name without `.safetensors` (what a request names it by).
    public var name: String
    public var path: String
    public var format: AdapterFormat
    /// The algorithm: lora, locon (k x k convolutions or a Tucker mid core), loha, lokr, dora,
    /// diff, or mixed (several kinds in one file).
    public var type: String
    /// Whether it can apply in runtime mode (`--lora-mode runtime`); LoHa, LoKr, DoRA and full
    /// diffs apply fused only.
    public var runtimeCapable: Bool
    /// The most common rank (and every distinct rank).
    public var rank: Int
    public var ranks: [Int]
    /// The most common alpha (alpha = rank when the file has none).
    public var alpha: Float
    /// Modules by family, e.g. ["unet.attention": 64, "text_encoder.attention": 48, "unet.conv": 22].
    public var targets: [String: Int]
    public var moduleCount: Int
    public var parameterCount: Int
    public var fileSize: Int
    /// The base model family the shapes point to ("SD1.x", "SD2.x", "SDXL", or "unknown").
    public var base: String
    /// When checked against a loaded model: nil if it fits, else the reason.
    public var fitsModel: Bool?
    public var problem: String?
    public var cached: Bool
    public var active: Bool
    /// A1111 short hash (12 hex digits), when computed.
    public var hash: String?
}

extension AdapterInfo {
    /// Summary of a file without a model.
    public init(file: AdapterFile, name: String) {
        self.name = name
        path = file.url.path
        format = file.format
        var rankCounts: [Int: Int] = [:], alphaCounts: [Float: Int] = [:], targets: [String: Int] = [:]
        var parameters = 0
        var kinds: Set<String> = []
        for entry in file.modules {
            kinds.insert(AdapterInfo.typeName(entry))
            if let rank = entry.rank { rankCounts[rank, default: 0] += 1 }
            let alpha = file.alphaAndRank(entry, modulePath: entry.underscored ? entry.name.replacingOccurrences(of: "_", with: ".") : entry.name).alpha
            alphaCounts[alpha, default: 0] += 1
            targets["\(entry.component.rawValue).\(AdapterInfo.family(entry))", default: 0] += 1
            parameters += entry.parameterCount
        }
        type = kinds.count == 1 ? kinds.first! : (kinds.isEmpty ? "lora" : (kinds == ["lora", "locon"] ? "locon" : "mixed"))
        runtimeCapable = !file.modules.contains(where: \.fusesOnly)
        rank = rankCounts.max { ($0.value, -$0.key) < ($1.value, -$1.key) }?.key ?? 0
        ranks = rankCounts.keys.sorted()
        alpha = alphaCounts.max { ($0.value, -$0.key) < ($1.value, -$1.key) }?.key ?? 0
        self.targets = targets
        moduleCount = file.modules.count
        parameterCount = parameters
        fileSize = file.fileSize
        base = AdapterInfo.guessBase(file)
        fitsModel = nil
        problem = nil
        cached = false
        active = false
        hash = nil
    }

    /// One module's algorithm as `type` names it.
    static func typeName(_ entry: AdapterModuleEntry) -> String {
        if entry.isDoRA { return "dora" }
        switch entry.kind {
        case .loha: return "loha"
        case .lokr: return "lokr"
        case .diff: return "diff"
        case .lora, nil: return entry.isConvolution || entry.tensors[.mid] != nil ? "locon" : "lora"
        }
    }

    /// attention / ff / proj / conv / time_emb / mlp / other, from the module name.
    static func family(_ entry: AdapterModuleEntry) -> String {
        let n = entry.underscored ? entry.name : entry.name.replacingOccurrences(of: ".", with: "_")
        let attention = ["to_q", "to_k", "to_v", "to_out_0", "to_out", "q_proj", "k_proj", "v_proj", "out_proj"]
        if attention.contains(where: { n.hasSuffix("_" + $0) || n == $0 }) { return "attention" }
        if n.contains("_ff_") { return "ff" }
        if n.hasSuffix("proj_in") || n.hasSuffix("proj_out") { return "proj" }
        if n.contains("mlp_fc") { return "mlp" }
        if n.hasSuffix("time_emb_proj") || n.contains("emb_layers") || n.contains("time_embed") { return "time_emb" }
        if entry.isConvolution || entry.downShape.count == 4 { return "conv" }
        return "other"
    }

    /// SD1.x: CLIP-L text encoder (768) and 768-wide cross-attention; SD2.x: OpenCLIP-H (1024);
    /// SDXL: a second text encoder (`lora_te2_`, `text_encoder_2.`) or 2048-wide cross-attention.
    static func guessBase(_ file: AdapterFile) -> String {
        if let v = file.metadata["ss_base_model_version"]?.lowercased() {
            if v.hasPrefix("sdxl") { return "SDXL" }
            if v.hasPrefix("sd_v2") || v.hasPrefix("sd_2") { return "SD2.x" }
            if v.hasPrefix("sd_v1") || v.hasPrefix("sd_1") { return "SD1.x" }
        }
        if file.modules.contains(where: { $0.component == .textEncoder2 }) { return "SDXL" }
        var unknownWidth: String?
        for entry in file.modules where entry.component == .unet {
            let n = entry.underscored ? entry.name : entry.name.replacingOccurrences(of: ".", with: "_")
            if n.hasSuffix("attn2_to_k") || n.hasSuffix("attn2_to_v"), let width = entry.inputWidth {
                switch width {
                case 768: return "SD1.x"
                case 1024: return "SD2.x"
                case 2048: return "SDXL"
                default: unknownWidth = unknownWidth ?? "unknown (cross-attention width \(width))"
                }
            }
        }
        for entry in file.modules where entry.component == .textEncoder {
            let n = entry.underscored ? entry.name : entry.name.replacingOccurrences(of: ".", with: "_")
            if n.hasSuffix("q_proj"), let width = entry.inputWidth {
                switch width {
                case 768: return "SD1.x"
                case 1024: return "SD2.x"
                default: break
                }
            }
        }
        // Widths of a model of other sizes say nothing; the UNet's layout still does: SD1.x/2.x have
        // attention in the first down block (SGM input_blocks 1 and 2), SDXL has none there.
        let firstLevelAttention = file.modules.contains { entry in
            guard entry.component == .unet else { return false }
            let n = entry.underscored ? entry.name : entry.name.replacingOccurrences(of: ".", with: "_")
            return n.hasPrefix("down_blocks_0_attentions") || n.hasPrefix("input_blocks_1_1") || n.hasPrefix("input_blocks_2_1")
        }
        if firstLevelAttention { return "SD1.x/SD2.x" }
        return unknownWidth ?? "unknown"
    }
}

extension AdapterInfo {
    /// A file that could not be read or does not fit: listed with the reason.
    public static func failed(url: URL, problem: String) -> AdapterInfo {
        var name = url.lastPathComponent
        if name.hasSuffix(".safetensors") { name.removeLast(".safetensors".count) }
        return AdapterInfo(name: name, path: url.path, format: .peft, type: "unknown", runtimeCapable: false, rank: 0, ranks: [], alpha: 0, targets: [:],
                           moduleCount: 0, parameterCount: 0, fileSize: 0, base: "unknown", fitsModel: false,
                           problem: problem, cached: false, active: false, hash: nil)
    }
}
