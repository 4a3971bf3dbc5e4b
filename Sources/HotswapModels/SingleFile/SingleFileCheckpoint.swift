// An original-format single-file Stable Diffusion checkpoint (what model sites distribute:
// `model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*` in one .safetensors), read
// into diffusers' components. The family is detected from keys as diffusers'
// single_file_utils.infer_diffusers_model_type does; the configs come from the tensors where they can
// (channels, layer counts, context size, projection type) and from the family's standard configs
// (Families/) where they cannot (head counts, norm groups, activation, pad token, scheduler).
import Foundation
import HotswapCore

public enum SingleFileError: Error, CustomStringConvertible, Equatable {
    case notACheckpoint(file: String, reason: String)
    case unsupportedCheckpoint(file: String, kind: String)
    case unknownKeys(file: String, keys: [String])
    case badSidecar(file: String, reason: String)
    case inconsistent(file: String, reason: String)

    public var description: String {
        switch self {
        case let .notACheckpoint(file, reason): return "\(file) is not a Stable Diffusion checkpoint: \(reason)"
        case let .unsupportedCheckpoint(file, kind): return "\(file) is \(kind): not supported"
        case let .unknownKeys(file, keys):
            return "\(file): \(keys.count) tensor(s) that no SD1.x/SD2.x key rule knows: "
                + keys.prefix(12).joined(separator: ", ") + (keys.count > 12 ? ", ..." : "")
        case let .badSidecar(file, reason): return "\(file): \(reason)"
        case let .inconsistent(file, reason): return "\(file): \(reason)"
        }
    }
}

/// How a single file is read where its tensors cannot say.
public struct SingleFileOptions: Sendable, Equatable {
    /// epsilon or v_prediction; nil: a sidecar's, else the family's default (SD1 epsilon, SD2
    /// v_prediction as diffusers' SD2 default, stable-diffusion-2-1).
    public var predictionType: String?
    /// A diffusers folder whose configs, scheduler and tokenizer are used instead of the family's and
    /// of what the tensors say (diffusers' `from_single_file(..., config=folder)`).
    public var configDirectory: URL?

    public init(predictionType: String? = nil, configDirectory: URL? = nil) {
        self.predictionType = predictionType
        self.configDirectory = configDirectory
    }

    public static let predictionTypes = ["epsilon", "v_prediction"]
}

/// One component read from the file: its diffusers config (a JSON object) and its weights by diffusers name.
public struct ComponentCheckpoint {
    public var config: JSONConfig
    public var weights: [String: Tensor]
}

public final class SingleFileCheckpoint {
    public let url: URL
    public let family: ModelFamily
    /// The dtype of the UNet's weights in the file (what `convert` writes back).
    public let weightsDType: SafeTensorsDType
    public let textEncoder: ComponentCheckpoint
    /// SDXL's OpenCLIP-bigG with projection, and the folder of its tokenizer's settings (pad "!").
    public let textEncoder2: ComponentCheckpoint?
    public let tokenizer2Directory: URL?
    /// Where tokenizer_2's vocab.json and merges.txt are (its own folder when --config gives one).
    public let vocabulary2Directory: URL?
    public let unet: ComponentCheckpoint
    public let vae: ComponentCheckpoint
    public let scheduler: JSONConfig
    /// tokenizer_config.json / special_tokens_map.json, and vocab.json / merges.txt.
    public let tokenizerDirectory: URL
    public let vocabularyDirectory: URL
    /// Tensors ignored by rule (schedule buffers, EMA, ...), for the record.
    public let ignoredCount: Int

    public init(url: URL, options: SingleFileOptions = .init()) throws {
        self.url = url
        let path = url.path
        let file = try SafeTensorsFile(url: url)
        let names = file.names
        func shape(_ key: String) -> [Int]? { file.infos[key]?.shape }

        // Family, as infer_diffusers_model_type; what we do not run is named and refused.
        let unetPrefix = "model.diffusion_model."
        guard names.contains(where: { $0.hasPrefix(unetPrefix) }) else {
            if names.contains(where: { $0.hasPrefix("lora_") || $0.contains(".lora_") || $0.contains(".hada_") || $0.contains(".lokr_") }) {
                throw SingleFileError.notACheckpoint(file: path, reason: "it holds adapter (LoRA/LyCORIS) tensors; use it as an adapter")
            }
            if names.contains(where: { $0.hasPrefix("conditioner.embedders.") }) {
                throw SingleFileError.unsupportedCheckpoint(file: path, kind: "an SDXL checkpoint without a UNet")
            }
            throw SingleFileError.notACheckpoint(file: path, reason: "no model.diffusion_model.* tensors (\(names.count) tensors, e.g. "
                + names.prefix(3).joined(separator: ", ") + ")")
        }
        if let s = shape("model.diffusion_model.input_blocks.0.0.weight"), s.count == 4, s[1] == 9 {
            throw SingleFileError.unsupportedCheckpoint(file: path, kind: "an inpainting checkpoint (UNet with 9 input channels)")
        }
        if names.contains(where: { $0.hasPrefix("conditioner.embedders.0.model.") }) {
            throw SingleFileError.unsupportedCheckpoint(file: path, kind: "an SDXL refiner (OpenCLIP-bigG alone in conditioner.embedders.0)")
        }
        if names.contains(where: { $0.hasPrefix("control_model.") }) {
            throw SingleFileError.unsupportedCheckpoint(file: path, kind: "a ControlNet")
        }
        if shape("model.diffusion_model.input_blocks.10.0.skip_connection.bias") != nil,
           let s = shape("model.diffusion_model.input_blocks.0.0.weight"), s.count == 4, s[1] == 7 {
            throw SingleFileError.unsupportedCheckpoint(file: path, kind: "an upscaler (x4 upscale UNet)")
        }
        let family: ModelFamily
        if names.contains(where: { $0.hasPrefix("conditioner.embedders.") }) {
            guard names.contains(where: { $0.hasPrefix("conditioner.embedders.0.transformer.") }),
                  names.contains(where: { $0.hasPrefix("conditioner.embedders.1.model.") }) else {
                throw SingleFileError.notACheckpoint(file: path, reason: "SDXL needs both text encoders (conditioner.embedders.0.transformer.*, conditioner.embedders.1.model.*)")
            }
            family = .sdxl
        } else if shape("cond_stage_model.model.token_embedding.weight") != nil {
            family = .sd2
        } else if names.contains(where: { $0.hasPrefix("cond_stage_model.transformer.") }) {
            family = .sd1
        } else {
            throw SingleFileError.notACheckpoint(file: path, reason: "no text encoder (cond_stage_model.transformer.* for SD1.x, cond_stage_model.model.* for SD2.x)")
        }
        guard names.contains(where: { $0.hasPrefix("first_stage_model.") }) else {
            throw SingleFileError.notACheckpoint(file: path, reason: "no VAE (first_stage_model.*)")
        }
        self.family = family
        weightsDType = file.infos["model.diffusion_model.input_blocks.0.0.weight"]?.dtype ?? .F32

        // Configs given by a folder (diffusers' config=), else the family's.
        let configFolder = options.configDirectory
        func baseConfig(_ component: String, folderFile: String) throws -> JSONConfig {
            if let configFolder { return try JSONConfig(contentsOf: configFolder.appendingPathComponent(folderFile)) }
            return try family.defaultConfig(component)
        }
        var textConfig = try baseConfig("text_encoder", folderFile: "text_encoder/config.json")
        var textConfig2 = family == .sdxl ? try baseConfig("text_encoder_2", folderFile: "text_encoder_2/config.json") : nil

        // The layout the key rules need, from key names.
        let inputBlocks = Set(names.compactMap { Self.index(after: "model.diffusion_model.input_blocks.", in: $0) })
        let downsamplers = inputBlocks.filter { shape("model.diffusion_model.input_blocks.\($0).0.op.weight") != nil }.sorted()
        let layersPerBlock = downsamplers.first.map { $0 - 1 } ?? (inputBlocks.count - 1)
        guard layersPerBlock >= 1, inputBlocks.count == 1 + (downsamplers.count + 1) * layersPerBlock + downsamplers.count,
              inputBlocks == Set(0..<inputBlocks.count) else {
            throw SingleFileError.inconsistent(file: path, reason: "UNet input_blocks \(inputBlocks.sorted()) do not form levels of equal depth")
        }
        let vaeUpBlocks = Set(names.compactMap { Self.index(after: "first_stage_model.decoder.up.", in: $0) }).count
        let resblocks = Set(names.compactMap { Self.index(after: "cond_stage_model.model.transformer.resblocks.", in: $0) }).count
        // A real SD2 checkpoint carries OpenCLIP's whole text tower (text_projection included) and
        // conditions on its penultimate layer: diffusers' SD2 text encoder is that tower less its last
        // layer. A file converted back from diffusers (its convert_diffusers_to_original script,
        // which writes no text_projection) holds exactly the layers to use.
        let fullTower = shape("cond_stage_model.model.text_projection") != nil
        var openCLIPLayers = fullTower ? max(resblocks - 1, 0) : resblocks
        if family == .sd2, configFolder != nil, let n = textConfig["num_hidden_layers"]?.nonNegativeInt { openCLIPLayers = n }
        var layout = LDMLayout(unetLayersPerBlock: layersPerBlock, vaeUpBlocks: vaeUpBlocks, openCLIPLayers: openCLIPLayers)
        if configFolder != nil, let n = textConfig2?["num_hidden_layers"]?.nonNegativeInt { layout.openCLIP2Layers = n }

        // Every tensor through the rules; unknown keys are listed, not skipped, and two tensors for
        // one weight (e.g. SD1's and SDXL's text encoder in one file) are an error, not a silent pick.
        var targets: [(name: String, target: LDMTarget)] = []
        var unknown: [String] = []
        var claimed: [String: String] = [:]
        for name in names {
            guard let target = LDMKeyMap.target(of: name, layout: layout) else { unknown.append(name); continue }
            let destinations: [String]
            switch target {
            case .ignored: destinations = []
            case let .weight(c, key), let .transposed(c, key), let .linearFromConv(c, key): destinations = ["\(c.rawValue).\(key)"]
            case let .fusedQKV(c, prefix, suffix): destinations = ["q_proj", "k_proj", "v_proj"].map { "\(c.rawValue).\(prefix).\($0).\(suffix)" }
            }
            for destination in destinations {
                if let other = claimed[destination] {
                    throw SingleFileError.inconsistent(file: path, reason: "\(other) and \(name) are both \(destination)")
                }
                claimed[destination] = name
            }
            targets.append((name, target))
        }
        if !unknown.isEmpty { throw SingleFileError.unknownKeys(file: path, keys: unknown) }
        var weights: [PipelineComponent: [String: Tensor]] = [:]
        var ignored = 0
        for (name, target) in targets {
            switch target {
            case .ignored:
                ignored += 1
            case let .weight(component, key):
                weights[component, default: [:]][key] = try file.tensor(name)
            case let .transposed(component, key):
                let matrix = try file.tensor(name)
                guard matrix.rank == 2 else {
                    throw SingleFileError.inconsistent(file: path, reason: "\(name) has shape \(matrix.shape); expected a matrix")
                }
                weights[component, default: [:]][key] = Self.transpose(matrix)
            case let .linearFromConv(component, key):
                let kernel = try file.tensor(name)
                let isPointwise = kernel.rank == 4 && kernel.shape[2] == 1 && kernel.shape[3] == 1
                weights[component, default: [:]][key] = isPointwise ? kernel.reshaped(Array(kernel.shape[0..<2])) : kernel
            case let .fusedQKV(component, prefix, suffix):
                let fused = try file.tensor(name)
                guard let rows = fused.shape.first, rows % 3 == 0, rows > 0 else {
                    throw SingleFileError.inconsistent(file: path, reason: "\(name) has shape \(fused.shape); expected 3 x width rows")
                }
                for (i, part) in ["q_proj", "k_proj", "v_proj"].enumerated() {
                    weights[component, default: [:]]["\(prefix).\(part).\(suffix)"] = Self.rows(of: fused, i * rows / 3..<(i + 1) * rows / 3)
                }
            }
        }
        ignoredCount = ignored
        let textWeights = weights[.textEncoder] ?? [:], unetWeights = weights[.unet] ?? [:], vaeWeights = weights[.vae] ?? [:]
        let textWeights2 = weights[.textEncoder2] ?? [:]

        var unetConfig = try baseConfig("unet", folderFile: "unet/config.json")
        var vaeConfig = try baseConfig("vae", folderFile: "vae/config.json")
        var scheduler = try baseConfig("scheduler_config", folderFile: "scheduler/scheduler_config.json")
        if configFolder == nil {
            try Self.inferText(&textConfig, from: textWeights, family: family, file: path)
            if textConfig2 != nil {
                try Self.inferText(&textConfig2!, from: textWeights2, family: family, file: path)
                guard let projection = Self.dim(textWeights2["text_projection.weight"], 0), projection > 0 else {
                    throw SingleFileError.inconsistent(file: path, reason: "the second text encoder has no text_projection")
                }
                textConfig2!["projection_dim"] = .int(projection)
            }
            try Self.inferUNet(&unetConfig, from: unetWeights, layersPerBlock: layersPerBlock, family: family, file: path)
            if family == .sdxl {
                try Self.inferAddition(&unetConfig, from: unetWeights, projection: textConfig2?["projection_dim"]?.nonNegativeInt ?? 0, file: path)
            }
            try Self.inferVAE(&vaeConfig, from: vaeWeights, upBlocks: vaeUpBlocks, file: path)
        }
        let predictionType = try options.predictionType ?? Self.sidecarPredictionType(for: url)
        if let predictionType {
            guard SingleFileOptions.predictionTypes.contains(predictionType) else {
                throw SingleFileError.badSidecar(file: path, reason: "prediction type '\(predictionType)' is not one of "
                    + SingleFileOptions.predictionTypes.joined(separator: ", "))
            }
            scheduler["prediction_type"] = .string(predictionType)
            // SD2's 768-v is the v-prediction model; its epsilon sibling (2.x-base) renders 512.
            if family == .sd2, configFolder == nil { unetConfig["sample_size"] = .int(predictionType == "v_prediction" ? 96 : 64) }
        }

        textEncoder = ComponentCheckpoint(config: textConfig, weights: textWeights)
        textEncoder2 = textConfig2.map { ComponentCheckpoint(config: $0, weights: textWeights2) }
        unet = ComponentCheckpoint(config: unetConfig, weights: unetWeights)
        vae = ComponentCheckpoint(config: vaeConfig, weights: vaeWeights)
        self.scheduler = scheduler
        if let configFolder {
            tokenizerDirectory = configFolder.appendingPathComponent("tokenizer")
            vocabularyDirectory = tokenizerDirectory
            tokenizer2Directory = family == .sdxl ? configFolder.appendingPathComponent("tokenizer_2") : nil
            vocabulary2Directory = tokenizer2Directory
        } else {
            tokenizerDirectory = try family.tokenizerDirectory()
            vocabularyDirectory = try ModelFamily.vocabularyDirectory()
            tokenizer2Directory = family == .sdxl ? try family.tokenizerDirectory("tokenizer_2") : nil
            vocabulary2Directory = vocabularyDirectory
        }
    }

    // MARK: Reading configs from tensors

    static func inferText(_ config: inout JSONConfig, from w: [String: Tensor], family: ModelFamily, file: String) throws {
        func find(_ suffix: String) -> Tensor? { w["text_model." + suffix] ?? w[suffix] }
        guard let embedding = find("embeddings.token_embedding.weight"), embedding.rank == 2,
              let positions = find("embeddings.position_embedding.weight"), positions.rank == 2 else {
            throw SingleFileError.inconsistent(file: file, reason: "the text encoder has no token/position embedding")
        }
        let hidden = embedding.shape[1]
        guard hidden > 0, embedding.shape[0] > 0, positions.shape[0] > 0, positions.shape[1] == hidden else {
            throw SingleFileError.inconsistent(file: file, reason: "text encoder embeddings \(embedding.shape) and \(positions.shape) are empty or disagree")
        }
        let layers = Set(w.keys.compactMap { index(after: "text_model.encoder.layers.", in: $0) ?? index(after: "encoder.layers.", in: $0) }).count
        guard hidden % 64 == 0 else {
            throw SingleFileError.inconsistent(file: file, reason: "text encoder width \(hidden) is not a multiple of the \(family.rawValue) text encoder's 64-channel heads")
        }
        // The family's tokenizer is CLIP's 49408-token BPE: a smaller table would be indexed past its end.
        guard embedding.shape[0] >= 49408 else {
            throw SingleFileError.inconsistent(file: file, reason: "the token embedding has \(embedding.shape[0]) rows; "
                + "the \(family.rawValue) CLIP tokenizer needs 49408 (give its own tokenizer with --config DIR)")
        }
        config["vocab_size"] = .int(embedding.shape[0])
        config["hidden_size"] = .int(hidden)
        config["projection_dim"] = .int(hidden)
        config["max_position_embeddings"] = .int(positions.shape[0])
        config["num_hidden_layers"] = .int(layers)
        config["num_attention_heads"] = .int(hidden / 64)
        if let width = dim(find("encoder.layers.0.mlp.fc1.weight"), 0) { config["intermediate_size"] = .int(width) }
    }

    static func inferUNet(_ config: inout JSONConfig, from w: [String: Tensor], layersPerBlock: Int, family: ModelFamily, file: String) throws {
        guard let convIn = w["conv_in.weight"], convIn.rank == 4, let convOut = w["conv_out.weight"], convOut.rank == 4 else {
            throw SingleFileError.inconsistent(file: file, reason: "the UNet has no conv_in/conv_out")
        }
        let levels = Set(w.keys.compactMap { index(after: "down_blocks.", in: $0) }).count
        func depth(of attention: String) -> Int { Set(w.keys.compactMap { index(after: attention + ".transformer_blocks.", in: $0) }).count }
        // diffusers gives the mid block the last entry of transformer_layers_per_block, and blocks
        // without attention ignore theirs: those take the mid block's depth.
        let midDepth = max(depth(of: "mid_block.attentions.0"), 1)
        var channels: [Int] = [], down: [String] = [], up: [String] = [], depths: [Int] = []
        var crossAttentionDim: Int?, linear: Bool?
        for b in 0..<levels {
            guard let width = dim(w["down_blocks.\(b).resnets.0.conv2.weight"], 0) else {
                throw SingleFileError.inconsistent(file: file, reason: "UNet level \(b) has no resnet")
            }
            channels.append(width)
            if let projIn = w["down_blocks.\(b).attentions.0.proj_in.weight"] {
                down.append("CrossAttnDownBlock2D")
                linear = projIn.rank == 2
                depths.append(depth(of: "down_blocks.\(b).attentions.0"))
                crossAttentionDim = crossAttentionDim ?? dim(w["down_blocks.\(b).attentions.0.transformer_blocks.0.attn2.to_k.weight"], 1)
            } else {
                down.append("DownBlock2D")
                depths.append(midDepth)
            }
            up.append(w["up_blocks.\(b).attentions.0.proj_in.weight"] != nil ? "CrossAttnUpBlock2D" : "UpBlock2D")
        }
        guard let crossAttentionDim, let linear else {
            throw SingleFileError.inconsistent(file: file, reason: "the UNet has no cross-attention block")
        }
        guard channels.allSatisfy({ $0 > 0 }), crossAttentionDim > 0, convIn.shape[1] > 0, convOut.shape[0] > 0 else {
            throw SingleFileError.inconsistent(file: file, reason: "the UNet has empty layers (channels \(channels))")
        }
        config["in_channels"] = .int(convIn.shape[1])
        config["out_channels"] = .int(convOut.shape[0])
        config["block_out_channels"] = .ints(channels)
        config["layers_per_block"] = .int(layersPerBlock)
        config["down_block_types"] = .strings(down)
        config["up_block_types"] = .strings(up)
        config["cross_attention_dim"] = .int(crossAttentionDim)
        config["use_linear_projection"] = .bool(linear)
        config["transformer_layers_per_block"] = Set(depths).count == 1 ? .int(depths[0]) : .ints(depths)
        config["mid_block_type"] = w["mid_block.attentions.0.proj_in.weight"] != nil ? .string("UNetMidBlock2DCrossAttn") : .null
        if family != .sd1 {  // 64-channel heads (SD1's 8 heads is its config's attention_head_dim: 8)
            config["attention_head_dim"] = .ints(channels.map { max(1, $0 / 64) })
        }
    }

    /// SDXL: add_embedding takes [pooled projection, 6 time ids x addition_time_embed_dim].
    static func inferAddition(_ config: inout JSONConfig, from w: [String: Tensor], projection: Int, file: String) throws {
        guard let width = dim(w["add_embedding.linear_1.weight"], 1), width > projection,
              (width - projection) % 6 == 0, ((width - projection) / 6) % 2 == 0 else {
            throw SingleFileError.inconsistent(file: file, reason: "the UNet's label_emb does not take the pooled projection (\(projection)) and six time ids")
        }
        config["projection_class_embeddings_input_dim"] = .int(width)
        config["addition_time_embed_dim"] = .int((width - projection) / 6)
    }

    static func inferVAE(_ config: inout JSONConfig, from w: [String: Tensor], upBlocks: Int, file: String) throws {
        guard let convIn = w["decoder.conv_in.weight"], convIn.rank == 4, let convOut = w["decoder.conv_out.weight"], convOut.rank == 4 else {
            throw SingleFileError.inconsistent(file: file, reason: "the VAE has no decoder.conv_in/conv_out")
        }
        // Decoder up_blocks run from the widest level (diffusers' index 0) to the image.
        var channels: [Int] = []
        for i in 0..<upBlocks {
            guard let width = dim(w["decoder.up_blocks.\(upBlocks - 1 - i).resnets.0.conv2.weight"], 0) else {
                throw SingleFileError.inconsistent(file: file, reason: "VAE decoder level \(i) has no resnet")
            }
            channels.append(width)
        }
        let resnets = Set(w.keys.compactMap { index(after: "decoder.up_blocks.0.resnets.", in: $0) }).count
        guard channels.allSatisfy({ $0 > 0 }), convIn.shape[1] > 0, convOut.shape[0] > 0 else {
            throw SingleFileError.inconsistent(file: file, reason: "the VAE has empty layers (channels \(channels))")
        }
        config["block_out_channels"] = .ints(channels)
        config["layers_per_block"] = .int(max(resnets - 1, 1))
        config["latent_channels"] = .int(convIn.shape[1])
        config["out_channels"] = .int(convOut.shape[0])
        if let inChannels = dim(w["encoder.conv_in.weight"], 1) { config["in_channels"] = .int(inChannels) }
        config["down_block_types"] = .strings(Array(repeating: "DownEncoderBlock2D", count: upBlocks))
        config["up_block_types"] = .strings(Array(repeating: "UpDecoderBlock2D", count: upBlocks))
        config["mid_block_add_attention"] = .bool(w["decoder.mid_block.attentions.0.to_q.weight"] != nil)
        config["use_quant_conv"] = .bool(w["quant_conv.weight"] != nil)
        config["use_post_quant_conv"] = .bool(w["post_quant_conv.weight"] != nil)
    }

    // MARK: Helpers

    /// Axis `axis` of a weight's shape, or nil when it has no such axis (a hostile file's scalar).
    static func dim(_ tensor: Tensor?, _ axis: Int) -> Int? {
        guard let tensor, axis < tensor.rank else { return nil }
        return tensor.shape[axis]
    }

    /// The integer right after `prefix` in `key` ("a.b.7.c" after "a.b." -> 7).
    static func index(after prefix: String, in key: String) -> Int? {
        guard key.hasPrefix(prefix) else { return nil }
        return Int(key.dropFirst(prefix.count).prefix { $0 != "." })
    }

    /// The transpose of a matrix, as a new tensor (HotswapCore's tiled `Layout.transpose`).
    static func transpose(_ matrix: Tensor) -> Tensor {
        let (rows, columns) = (matrix.shape[0], matrix.shape[1])
        let out = Tensor(uninitialized: [columns, rows])
        Layout.transpose(matrix.data, rows: rows, columns: columns, into: out.data)
        return out
    }

    /// Rows `range` of `tensor` (first axis) as a new tensor.
    static func rows(of tensor: Tensor, _ range: Range<Int>) -> Tensor {
        let rowSize = tensor.count / tensor.shape[0]
        var shape = tensor.shape
        shape[0] = range.count
        let out = Tensor(uninitialized: shape)
        out.data.update(from: tensor.data + range.lowerBound * rowSize, count: range.count * rowSize)
        return out
    }

    /// The prediction type a sidecar next to the checkpoint declares: FILE.yaml (the original LDM
    /// config: `parameterization: "v"` means v_prediction, its absence epsilon) or FILE.json
    /// (`prediction_type`, as in a scheduler config). nil when there is no sidecar.
    static func sidecarPredictionType(for url: URL) throws -> String? {
        let base = url.deletingPathExtension()
        for ext in ["yaml", "yml"] {
            let sidecar = base.appendingPathExtension(ext)
            guard let text = try? String(contentsOf: sidecar, encoding: .utf8) else { continue }
            for line in text.split(whereSeparator: \.isNewline) {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                guard trimmed.hasPrefix("parameterization:") else { continue }
                let value = trimmed.dropFirst("parameterization:".count).split(separator: "#").first
                    .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \"'")) } ?? ""
                switch value {
                case "v": return "v_prediction"
                case "eps": return "epsilon"
                default: throw SingleFileError.badSidecar(file: sidecar.path, reason: "parameterization '\(value)' is not eps or v")
                }
            }
            return "epsilon"
        }
        let json = base.appendingPathExtension("json")
        if FileManager.default.fileExists(atPath: json.path) {
            guard case let .string(value)? = try JSONConfig(contentsOf: json)["prediction_type"] else {
                throw SingleFileError.badSidecar(file: json.path, reason: "no string prediction_type")
            }
            return value
        }
        return nil
    }
}
