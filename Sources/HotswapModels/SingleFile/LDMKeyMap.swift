// Original-format (LDM / CompVis / SGM) checkpoint keys -> diffusers keys, for SD1.x, SD2.x and SDXL single files.
// Port of diffusers' loaders/single_file_utils.py: convert_ldm_unet_checkpoint,
// convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint and convert_open_clip_checkpoint, written as
// one ordered rule list: the first rule whose prefix a key starts with decides; a key no rule takes
// is unknown, and the loader lists it.

/// The diffusers component a checkpoint tensor belongs to (its folder name in a pipeline).
public enum PipelineComponent: String, Sendable, CaseIterable {
    case textEncoder = "text_encoder"
    /// SDXL's OpenCLIP-bigG (CLIPTextModelWithProjection).
    case textEncoder2 = "text_encoder_2"
    case unet
    case vae
}

/// Where one checkpoint tensor goes.
enum LDMTarget: Equatable {
    case weight(PipelineComponent, String)
    /// OpenCLIP's fused attention input projection (`in_proj_weight` / `in_proj_bias`, q, k and v
    /// stacked on the first axis) -> `<prefix>.q_proj.<suffix>`, `k_proj`, `v_proj`.
    case fusedQKV(PipelineComponent, prefix: String, suffix: String)
    /// A 1x1 convolution kernel [out, in, 1, 1] that diffusers holds as a linear weight [out, in]
    /// (the VAE's mid-block attention projections: conv_attn_to_linear).
    case linearFromConv(PipelineComponent, String)
    /// OpenCLIP's text_projection, stored [width, projection] (x @ proj): diffusers' Linear weight is its transpose.
    case transposed(PipelineComponent, String)
    /// Known and not used for inference: the DDPM schedule buffers, EMA copies, the VAE's training
    /// loss, OpenCLIP's logit scale and projection, and SD2's last OpenCLIP layer.
    case ignored
}

/// What the rules need to know about the checkpoint's shape, read from its key names first.
struct LDMLayout {
    /// UNet resnets per down block (input_blocks per level, less the downsampler).
    var unetLayersPerBlock: Int
    /// Number of VAE decoder levels (LDM numbers them bottom-up, diffusers top-down).
    var vaeUpBlocks: Int
    /// OpenCLIP transformer layers the text encoder uses; later ones are ignored (SD2 conditions on
    /// the penultimate layer, so diffusers' SD2 text encoder has one layer fewer than a real file).
    var openCLIPLayers: Int
    /// SDXL's bigG keeps every layer (the pipeline takes hidden_states[-2] itself).
    var openCLIP2Layers: Int = .max
}

struct LDMRule {
    let prefix: String
    /// The key without `prefix`, split at dots -> its target, or nil when the rule does not know it.
    let map: (_ parts: [Substring], _ layout: LDMLayout) -> LDMTarget?
}

enum LDMKeyMap {
    /// The DDPM buffers that LatentDiffusion saves with every checkpoint.
    static let scheduleBuffers: Set<String> = [
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "logvar", "lvlb_weights",
    ]

    static let rules: [LDMRule] = [
        // Kept with the checkpoint, not part of the pipeline (diffusers reads the non-EMA weights too).
        LDMRule(prefix: "model_ema.") { _, _ in .ignored },
        LDMRule(prefix: "first_stage_model.loss.") { _, _ in .ignored },
        LDMRule(prefix: "cond_stage_model.model.logit_scale") { parts, _ in parts == [""] ? .ignored : nil },
        LDMRule(prefix: "cond_stage_model.model.text_projection") { parts, _ in parts == [""] ? .ignored : nil },
        LDMRule(prefix: "conditioner.embedders.1.model.logit_scale") { parts, _ in parts == [""] ? .ignored : nil },
        LDMRule(prefix: "conditioner.embedders.1.model.text_projection") { parts, _ in
            parts == [""] ? .transposed(.textEncoder2, "text_projection.weight") : nil
        },
        LDMRule(prefix: "model.diffusion_model.") { parts, layout in unet(parts, layout).map { .weight(.unet, $0) } },
        LDMRule(prefix: "first_stage_model.") { parts, layout in
            vae(parts, layout).map { $0.contains(".mid_block.attentions.0.to_") && $0.hasSuffix(".weight") ? .linearFromConv(.vae, $0) : .weight(.vae, $0) }
        },
        // SD1: transformers' CLIPTextModel verbatim.
        LDMRule(prefix: "cond_stage_model.transformer.") { parts, _ in .weight(.textEncoder, parts.joined(separator: ".")) },
        // SD2: OpenCLIP's text tower.
        LDMRule(prefix: "cond_stage_model.model.") { parts, layout in openCLIP(parts, .textEncoder, layers: layout.openCLIPLayers) },
        // SDXL (SGM's conditioner): CLIP-L as transformers' CLIPTextModel, OpenCLIP-bigG.
        LDMRule(prefix: "conditioner.embedders.0.transformer.") { parts, _ in .weight(.textEncoder, parts.joined(separator: ".")) },
        LDMRule(prefix: "conditioner.embedders.1.model.") { parts, layout in openCLIP(parts, .textEncoder2, layers: layout.openCLIP2Layers) },
    ]

    /// The target of `key`, or nil when no rule knows it.
    static func target(of key: String, layout: LDMLayout) -> LDMTarget? {
        if scheduleBuffers.contains(key) { return .ignored }
        for rule in rules where key.hasPrefix(rule.prefix) {
            return rule.map(key.dropFirst(rule.prefix.count).split(separator: ".", omittingEmptySubsequences: false), layout)
        }
        return nil
    }

    // MARK: UNet

    /// LDM ResBlock -> diffusers ResnetBlock2D (update_unet_resnet_ldm_to_diffusers).
    static func unetResnet(_ parts: ArraySlice<Substring>) -> String? {
        let renames: [(String, String)] = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
                                           ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"),
                                           ("skip_connection", "conv_shortcut")]
        let rest = parts.joined(separator: ".")
        for (ldm, diffusers) in renames where rest.hasPrefix(ldm + ".") {
            return diffusers + rest.dropFirst(ldm.count)
        }
        return nil
    }

    static func unet(_ p: [Substring], _ layout: LDMLayout) -> String? {
        guard p.count >= 2 else { return nil }
        func index(_ s: Substring) -> Int? { Int(s).flatMap { $0 >= 0 ? $0 : nil } }
        let lpb = layout.unetLayersPerBlock
        let tail = { (from: Int) in p[from...].joined(separator: ".") }
        switch p[0] {
        case "time_embed":
            switch p[1] {
            case "0": return "time_embedding.linear_1." + tail(2)
            case "2": return "time_embedding.linear_2." + tail(2)
            default: return nil
            }
        case "out":
            switch p[1] {
            case "0": return "conv_norm_out." + tail(2)
            case "2": return "conv_out." + tail(2)
            default: return nil
            }
        case "label_emb":  // SDXL's text_time add_embedding (a Sequential inside a Sequential)
            guard p.count >= 4, p[1] == "0" else { return nil }
            switch p[2] {
            case "0": return "add_embedding.linear_1." + tail(3)
            case "2": return "add_embedding.linear_2." + tail(3)
            default: return nil
            }
        case "input_blocks":
            guard p.count >= 4, let i = index(p[1]), let j = index(p[2]) else { return nil }
            if i == 0 { return j == 0 ? "conv_in." + tail(3) : nil }
            let block = (i - 1) / (lpb + 1), layer = (i - 1) % (lpb + 1)
            if layer == lpb {  // the level's downsampler
                return j == 0 && p[3] == "op" ? "down_blocks.\(block).downsamplers.0.conv." + tail(4) : nil
            }
            switch j {
            case 0: return unetResnet(p[3...]).map { "down_blocks.\(block).resnets.\(layer)." + $0 }
            case 1: return "down_blocks.\(block).attentions.\(layer)." + tail(3)
            default: return nil
            }
        case "middle_block":
            switch p[1] {
            case "0": return unetResnet(p[2...]).map { "mid_block.resnets.0." + $0 }
            case "1": return "mid_block.attentions.0." + tail(2)
            case "2": return unetResnet(p[2...]).map { "mid_block.resnets.1." + $0 }
            default: return nil
            }
        case "output_blocks":
            guard p.count >= 4, let i = index(p[1]), let j = index(p[2]) else { return nil }
            let block = i / (lpb + 1), layer = i % (lpb + 1)
            if j == 0 { return unetResnet(p[3...]).map { "up_blocks.\(block).resnets.\(layer)." + $0 } }
            // The upsampler is the level's last module: .1 after a resnet, .2 after resnet + attention.
            if p[3] == "conv" && (j == 1 || j == 2) { return "up_blocks.\(block).upsamplers.0.conv." + tail(4) }
            return j == 1 ? "up_blocks.\(block).attentions.\(layer)." + tail(3) : nil
        default:
            return nil
        }
    }

    // MARK: VAE

    static func vaeResnet(_ parts: ArraySlice<Substring>) -> String? {
        guard let first = parts.first, ["norm1", "conv1", "norm2", "conv2", "nin_shortcut"].contains(first) else { return nil }
        return (first == "nin_shortcut" ? "conv_shortcut" : String(first)) + "." + parts.dropFirst().joined(separator: ".")
    }

    static func vae(_ p: [Substring], _ layout: LDMLayout) -> String? {
        guard p.count >= 2 else { return nil }
        let tail = { (from: Int) in p[from...].joined(separator: ".") }
        if p[0] == "quant_conv" || p[0] == "post_quant_conv" { return p.joined(separator: ".") }
        guard p[0] == "encoder" || p[0] == "decoder", p.count >= 3 else { return nil }
        let side = String(p[0])
        switch p[1] {
        case "conv_in", "conv_out": return p.joined(separator: ".")
        case "norm_out": return "\(side).conv_norm_out." + tail(2)
        case "mid":
            switch p[2] {
            case "block_1": return vaeResnet(p[3...]).map { "\(side).mid_block.resnets.0." + $0 }
            case "block_2": return vaeResnet(p[3...]).map { "\(side).mid_block.resnets.1." + $0 }
            case "attn_1":
                let names = ["norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"]
                guard p.count >= 5, let name = names[String(p[3])] else { return nil }
                return "\(side).mid_block.attentions.0.\(name)." + tail(4)
            default: return nil
            }
        case "down" where side == "encoder":
            guard p.count >= 5, let i = Int(p[2]), i >= 0 else { return nil }
            if p[3] == "block" { return vaeResnet(p[5...]).map { "encoder.down_blocks.\(i).resnets.\(p[4])." + $0 } }
            if p[3] == "downsample" && p[4] == "conv" { return "encoder.down_blocks.\(i).downsamplers.0.conv." + tail(5) }
            return nil
        case "up" where side == "decoder":
            guard p.count >= 5, let k = Int(p[2]), k >= 0, k < layout.vaeUpBlocks else { return nil }
            let i = layout.vaeUpBlocks - 1 - k
            if p[3] == "block" { return vaeResnet(p[5...]).map { "decoder.up_blocks.\(i).resnets.\(p[4])." + $0 } }
            if p[3] == "upsample" && p[4] == "conv" { return "decoder.up_blocks.\(i).upsamplers.0.conv." + tail(5) }
            return nil
        default:
            return nil
        }
    }

    // MARK: OpenCLIP text encoders (SD2's, SDXL's bigG)

    static func openCLIP(_ p: [Substring], _ component: PipelineComponent, layers: Int) -> LDMTarget? {
        let key = p.joined(separator: ".")
        switch key {
        case "token_embedding.weight": return .weight(component, "text_model.embeddings.token_embedding.weight")
        case "positional_embedding": return .weight(component, "text_model.embeddings.position_embedding.weight")
        case "ln_final.weight", "ln_final.bias": return .weight(component, "text_model.final_layer_norm." + p[1])
        default: break
        }
        guard p.count >= 5, p[0] == "transformer", p[1] == "resblocks", let i = Int(p[2]), i >= 0 else { return nil }
        let layer = "text_model.encoder.layers.\(i)"
        let rest = p[3...].joined(separator: ".")
        let target: LDMTarget?
        switch rest {
        case "attn.in_proj_weight": target = .fusedQKV(component, prefix: "\(layer).self_attn", suffix: "weight")
        case "attn.in_proj_bias": target = .fusedQKV(component, prefix: "\(layer).self_attn", suffix: "bias")
        default:
            let renames = ["attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                           "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"]
            let module = p[3..<(p.count - 1)].joined(separator: "."), parameter = p[p.count - 1]
            guard let name = renames[module], parameter == "weight" || parameter == "bias" else { return nil }
            target = .weight(component, "\(layer).\(name).\(parameter)")
        }
        guard let target else { return nil }
        return i < layers ? target : .ignored
    }
}
