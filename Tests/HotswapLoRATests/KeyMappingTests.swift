import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
import HotswapModels
@testable import HotswapLoRA
import HotswapPipeline

/// How file keys become (component, module, role), and how module names find layers.
@Suite struct KeyMappingTests {
    func parse(_ key: String) -> (LoRAComponent, String, AdapterTensorRole, AdapterFormat)? {
        AdapterFile.classify(key).map { ($0.component, $0.name, $0.role, $0.format) }
    }

    @Test func classifiesEveryLayout() {
        let cases: [(String, LoRAComponent, String, AdapterTensorRole, AdapterFormat)] = [
            ("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", .unet,
             "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", .down, .peft),
            ("text_encoder.encoder.layers.0.self_attn.q_proj.lora_B.weight", .textEncoder, "encoder.layers.0.self_attn.q_proj", .up, .peft),
            ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight", .textEncoder, "encoder.layers.0.self_attn.q_proj", .up, .peft),
            ("lora_unet_mid_block_attentions_0_proj_in.lora_down.weight", .unet, "mid_block_attentions_0_proj_in", .down, .kohya),
            ("lora_te_text_model_encoder_layers_11_mlp_fc1.alpha", .textEncoder, "encoder_layers_11_mlp_fc1", .alpha, .kohya),
            ("lora_te_encoder_layers_11_mlp_fc1.lora_up.weight", .textEncoder, "encoder_layers_11_mlp_fc1", .up, .kohya),
            ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", .textEncoder2, "encoder_layers_0_self_attn_q_proj", .up, .kohya),
            ("unet.up_blocks.1.attentions.2.transformer_blocks.0.attn2.processor.to_out_lora.down.weight", .unet,
             "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0", .down, .diffusersAttnProcessor),
            ("text_encoder.text_model.encoder.layers.3.self_attn.to_k_lora.up.weight", .textEncoder,
             "encoder.layers.3.self_attn.k_proj", .up, .diffusersAttnProcessor),
            ("text_encoder.text_model.encoder.layers.3.mlp.fc2.lora_linear_layer.up.weight", .textEncoder,
             "encoder.layers.3.mlp.fc2", .up, .diffusersLoRALayer),
        ]
        for (key, component, name, role, format) in cases {
            let parsed = parse(key)
            #expect(parsed?.0 == component && parsed?.1 == name && parsed?.2 == role && parsed?.3 == format, "\(key) -> \(String(describing: parsed))")
        }
        // LyCORIS and DoRA tensors have roles of their own; unknown suffixes none.
        #expect(parse("lora_unet_x.hada_w1_a")?.2 == .hadaW1A)
        #expect(parse("lora_unet_x.lokr_t2")?.2 == .lokrT2)
        #expect(parse("lora_unet_x.dora_scale")?.2 == .doraScale)
        #expect(parse("lora_te_text_model_x.diff_b")?.2 == .diffBias)
        #expect(parse("unet.x.lora_magnitude_vector")?.2 == .magnitude)
        #expect(parse("unet.x.lora_B.bias")?.2 == .upBias)
        #expect(parse("lora_unet_x.oft_blocks") == nil)
        #expect(parse("unet.x.lora_embedding_A") == nil)
        #expect(parse("model.diffusion_model.weight") == nil)
    }

    @Test func sgmNamesMapToDiffusers() {
        let cases: [(String, String?)] = [
            ("input_blocks_1_1_transformer_blocks_0_attn1_to_q", "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"),
            ("input_blocks_2_0_in_layers_2", "down_blocks_0_resnets_1_conv1"),
            ("input_blocks_3_0_op", "down_blocks_0_downsamplers_0_conv"),
            ("input_blocks_4_1_proj_in", "down_blocks_1_attentions_0_proj_in"),
            ("middle_block_1_transformer_blocks_0_attn2_to_k", "mid_block_attentions_0_transformer_blocks_0_attn2_to_k"),
            ("middle_block_2_emb_layers_1", "mid_block_resnets_1_time_emb_proj"),
            ("output_blocks_2_1_conv", "up_blocks_0_upsamplers_0_conv"),
            ("output_blocks_5_1_transformer_blocks_0_ff_net_2", "up_blocks_1_attentions_2_transformer_blocks_0_ff_net_2"),
            ("output_blocks_8_2_conv", "up_blocks_2_upsamplers_0_conv"),
            ("output_blocks_3_0_skip_connection", "up_blocks_1_resnets_0_conv_shortcut"),
            ("time_embed_0", "time_embedding_linear_1"),
            ("down_blocks_0_resnets_0_conv1", nil),
        ]
        for (sgm, diffusers) in cases {
            #expect(LoRATargets.sgmToDiffusers(sgm, layersPerBlock: 2) == diffusers, "\(sgm)")
        }
    }

    @Test func kohyaNamesWithAndWithoutTextModelResolve() throws {
        let model = try StableDiffusionModel(directory: Fixtures.url("models/sd1-tiny"))
        let targets = LoRATargets(model: model)
        for key in ["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
                    "lora_te_encoder_layers_0_self_attn_q_proj.lora_down.weight",
                    "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
                    "text_encoder.encoder.layers.0.self_attn.q_proj.lora_A.weight"] {
            let p = try #require(AdapterFile.classify(key))
            let entry = AdapterModuleEntry(component: p.component, name: p.name, underscored: p.underscored)
            #expect(targets.resolve(entry)?.path == "encoder.layers.0.self_attn.q_proj", "\(key)")
        }
        for key in ["lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj.lora_up.weight",
                    "lora_unet_input_blocks_4_1_transformer_blocks_0_ff_net_0_proj.lora_up.weight"] {
            let p = try #require(AdapterFile.classify(key))
            let entry = AdapterModuleEntry(component: p.component, name: p.name, underscored: p.underscored)
            #expect(targets.resolve(entry)?.path == "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj", "\(key)")
        }
    }

    @Test func inspectReportsFormatRankAlphaAndTargets() throws {
        let model = try StableDiffusionModel(directory: Fixtures.url("models/sd1-tiny"))
        let manager = AdapterManager(model: model, adaptersDirectory: Fixtures.url("lora/sd1-tiny"), cacheLimitBytes: 1 << 26)
        let locon = try manager.validate(url: Fixtures.url("lora/sd1-tiny/locon.safetensors"))
        #expect(locon.format == .kohyaLoCon && locon.rank == 4 && locon.alpha == 3 && locon.fitsModel == true)
        #expect((locon.targets["unet.conv"] ?? 0) > 0 && (locon.targets["unet.attention"] ?? 0) > 0)
        let peft = try manager.inspect(url: Fixtures.url("lora/sd1-tiny/peft_attn.safetensors"))
        #expect(peft.format == .peft && peft.rank == 4 && peft.alpha == 8)
        #expect(peft.targets["text_encoder.attention"] == 12 && peft.targets["unet.attention"] == 88)
        let old = try manager.inspect(url: Fixtures.url("lora/sd1-tiny/old_processor.safetensors"))
        #expect(old.format == .diffusersAttnProcessor && old.alpha == 4)
        let list = try manager.list()
        #expect(list.map(\.name) == ["bad_keys", "bad_shapes", "kohya", "kohya_sgm", "kohya_unet_only", "kohya_varalpha", "legacy", "locon", "old_processor", "peft_attn", "peft_textmodel"])
        #expect(list.filter { $0.fitsModel == true }.count == 9)
        #expect(list.first { $0.name == "bad_shapes" }?.problem?.contains("[640, 4]") == true)
    }

    /// kohya alphas that differ by module: per module with `.kohya`; diffusers' reading with `.diffusers`
    /// (the images of LoRAParityTests' kohya_varalpha cases check the latter against diffusers itself).
    @Test func alphaConventions() throws {
        let model = try StableDiffusionModel(directory: Fixtures.url("models/sd1-tiny"))
        let targets = LoRATargets(model: model)
        let url = Fixtures.url("lora/sd1-tiny/kohya_varalpha.safetensors")
        let kohya = try LoRAAdapter.load(url: url, targets: targets, alphaConvention: .kohya)
        let diffusers = try LoRAAdapter.load(url: url, targets: targets, alphaConvention: .diffusers)
        let file = try AdapterFile(url: url)
        var alphaCounts: [Float: Int] = [:]
        for e in file.modules where e.component == .unet { alphaCounts[e.alpha!, default: 0] += 1 }
        #expect(alphaCounts.count == 4)
        var shared: [LoRAComponent: Set<Float>] = [:]
        for (k, d) in zip(kohya.updates, diffusers.updates) {
            #expect(k.path == d.path)
            #expect(k.scale == k.alpha / Float(k.rank))
            #expect(d.scale == d.alpha / Float(d.rank))
            if d.component == .unet && !AlphaConvention.isAttentionProjection(d.path) {
                #expect(d.scale == k.scale, "\(d.path)")
            } else {
                shared[d.component, default: []].insert(d.alpha)
            }
        }
        // Attention projections and every text-encoder layer share the component's most common alpha.
        #expect(shared[.unet]?.count == 1 && shared[.textEncoder]?.count == 1)
        #expect(zip(kohya.updates, diffusers.updates).contains { $0.scale != $1.scale })
    }
}

/// Every Linear and Conv2d diffusers has in the fixture models (so every layer a LoRA file can
/// target) is registered for adapters here, under the same name.
@Suite struct LoRATargetRegistryTests {
    struct Modules: Decodable { let unet: [String]; let text_encoder: [String] }
    struct Manifest: Decodable { let modules: [String: Modules] }

    @Test(arguments: ["sd1-tiny", "sd2-tiny"])
    func everyDiffusersLayerIsATarget(_ name: String) throws {
        let manifest: Manifest = try Fixtures.json("reference/lora/manifest.json")
        let expected = try #require(manifest.modules[name])
        let model = try StableDiffusionModel(directory: Fixtures.url("models/\(name)"))
        let targets = LoRATargets(model: model)
        #expect(Set(targets.unet.keys) == Set(expected.unet),
                "missing \(Set(expected.unet).subtracting(targets.unet.keys).sorted()), extra \(Set(targets.unet.keys).subtracting(expected.unet).sorted())")
        #expect(Set(targets.textEncoder.keys) == Set(expected.text_encoder),
                "missing \(Set(expected.text_encoder).subtracting(targets.textEncoder.keys).sorted())")
    }
}
