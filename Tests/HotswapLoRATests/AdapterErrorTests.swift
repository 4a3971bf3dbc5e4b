import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
import HotswapModels
@testable import HotswapLoRA
import HotswapPipeline

/// Every way an adapter can be refused, each with an error naming the file, keys or shapes, and
/// each leaving the active set (and the fused weights) exactly as they were.
@Suite struct AdapterErrorTests {
    let directory: URL
    let model: StableDiffusionModel
    let manager: AdapterManager

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-lora-err-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for name in ["kohya", "bad_keys", "bad_shapes", "peft_attn"] {
            try FileManager.default.copyItem(at: Fixtures.url("lora/sd1-tiny/\(name).safetensors"),
                                             to: directory.appendingPathComponent("\(name).safetensors"))
        }
        model = try StableDiffusionModel(directory: Fixtures.url("models/sd1-tiny"))
        manager = AdapterManager(model: model, adaptersDirectory: directory, cacheLimitBytes: 64 << 20)
    }

    func write(_ name: String, _ tensors: [String: Tensor]) throws {
        try SafeTensorsWriter.write(tensors, to: directory.appendingPathComponent("\(name).safetensors"))
    }

    /// Activates a good adapter, expects `specs` to fail with an error whose text contains every
    /// one of `fragments`, and checks nothing changed.
    func expectRefused(_ specs: [AdapterSpec], _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let good = [AdapterSpec(name: "kohya", scale: 0.7)]
        try manager.activate(good)
        let before = AdapterSwapTests.weightHashes(model)
        do {
            try manager.activate(specs)
            Issue.record("expected an error", sourceLocation: sourceLocation)
        } catch let error as LoRAError {
            let text = error.description
            for fragment in fragments {
                #expect(text.contains(fragment), "'\(fragment)' not in: \(text)", sourceLocation: sourceLocation)
            }
        }
        #expect(manager.active == good, sourceLocation: sourceLocation)
        let after = AdapterSwapTests.weightHashes(model)
        #expect(after.active == before.active && after.base == before.base, sourceLocation: sourceLocation)
    }

    @Test func unknownName() throws {
        try expectRefused([AdapterSpec(name: "nope")], ["unknown adapter 'nope'", "available: bad_keys, bad_shapes, kohya, peft_attn"])
        try expectRefused([AdapterSpec(name: "peft_attn"), AdapterSpec(name: "/no/such/file.safetensors")], ["/no/such/file.safetensors"])
    }

    @Test func corruptFile() throws {
        try Data("not a safetensors file at all".utf8).write(to: directory.appendingPathComponent("corrupt.safetensors"))
        try expectRefused([AdapterSpec(name: "corrupt")], ["cannot read adapter", "corrupt.safetensors"])
        try Data([1, 0, 0]).write(to: directory.appendingPathComponent("short.safetensors"))
        try expectRefused([AdapterSpec(name: "short")], ["short.safetensors"])
    }

    @Test func keysThatMatchNothing() throws {
        // lora_te2_ (SDXL's second text encoder) and label_emb (SDXL) do not exist in SD1.x.
        try expectRefused([AdapterSpec(name: "bad_keys")], [
            "does not fit this model", "4 keys match no layer (1 did)",
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
            "lora_unet_label_emb_0_0.lora_up.weight",
        ])
        #expect(throws: LoRAError.self) { try manager.validate(url: directory.appendingPathComponent("bad_keys.safetensors")) }
    }

    @Test func shapesOfAnotherBase() throws {
        // An SDXL-sized cross-attention to_k on SD1's module name.
        try expectRefused([AdapterSpec(name: "bad_shapes")], [
            "does not fit this model", "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
            "layer weight [16, 16]", "lora down [4, 2048], up [640, 4]",
        ])
        let info = try manager.inspect(url: directory.appendingPathComponent("bad_shapes.safetensors"))
        #expect(info.base == "SDXL")
    }

    @Test func sd2AdapterOnSD1() throws {
        try FileManager.default.copyItem(at: Fixtures.url("lora/sd2-tiny/peft_attn.safetensors"),
                                         to: directory.appendingPathComponent("sd2.safetensors"))
        try expectRefused([AdapterSpec(name: "sd2")], ["does not fit this model", "layers have other shapes"])
    }

    @Test func incompletePairsAndUnsupportedLayouts() throws {
        try write("half", ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": Tensor(zeros: [4, 8])])
        try expectRefused([AdapterSpec(name: "half")], ["half.safetensors", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "lacks its up"])
        try write("loha", ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.hada_w1_a": Tensor(zeros: [8, 4])])
        try expectRefused([AdapterSpec(name: "loha")], ["loha.safetensors", "attn1.to_q", "lacks hada_w1_b"])
        try write("mixed", [
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.hada_w1_a": Tensor(zeros: [8, 4]),
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": Tensor(zeros: [4, 8]),
        ])
        try expectRefused([AdapterSpec(name: "mixed")], ["mixes LoRA, LoHa, LoKr or diff keys"])
        try write("oft", ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.oft_blocks": Tensor(zeros: [8, 4])])
        try expectRefused([AdapterSpec(name: "oft")], ["no supported LoRA layout", "oft_blocks"])
        try write("empty", [:])
        try expectRefused([AdapterSpec(name: "empty")], ["holds no LoRA weights"])
        try write("rankmismatch", [
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": Tensor(zeros: [4, 8]),
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": Tensor(zeros: [8, 2]),
        ])
        try expectRefused([AdapterSpec(name: "rankmismatch")], ["lora down [4, 8], up [8, 2]"])
    }

    @Test func badScale() throws {
        try expectRefused([AdapterSpec(name: "peft_attn", scale: .nan)], ["scale must be a finite number"])
        #expect(throws: LoRAError.self) { try AdapterSpec(parsing: ":0.5") }
        #expect(try AdapterSpec(parsing: "style:0.75") == AdapterSpec(name: "style", scale: 0.75))
        #expect(try AdapterSpec(parsing: "/a/b:c/style.safetensors") == AdapterSpec(name: "/a/b:c/style.safetensors", scale: 1))
        #expect(try AdapterSpec(parsing: "style:-1") == AdapterSpec(name: "style", scale: -1))
    }

    /// A copy of a fixture adapter with one tensor replaced (or metadata changed).
    func mutate(_ fixture: String, into name: String, metadata: [String: String]? = nil,
                _ change: (inout [String: Tensor]) -> Void = { _ in }) throws {
        let source = try SafeTensorsFile(url: directory.appendingPathComponent("\(fixture).safetensors"))
        var tensors = try source.allTensors().mapValues { $0.copy() }
        change(&tensors)
        try SafeTensorsWriter.write(tensors, metadata: metadata ?? source.metadata,
                                    to: directory.appendingPathComponent("\(name).safetensors"))
    }

    /// The crashers of the reliability review, kept as regressions: non-finite or overflowing
    /// values are refused with the tensor named, by activate and by the upload check alike.
    @Test(arguments: [Float.nan, .infinity, -.infinity])
    func nonFiniteWeightsAndAlphas(value: Float) throws {
        try mutate("kohya", into: "badup") { tensors in
            let key = tensors.keys.sorted().first { $0.hasSuffix("lora_up.weight") }!
            tensors[key]!.data[3] = value
        }
        try expectRefused([AdapterSpec(name: "badup")], ["badup.safetensors", "lora_up.weight", "every value must be finite"])
        try mutate("kohya", into: "badalpha") { tensors in
            for key in tensors.keys where key.hasSuffix(".alpha") { tensors[key] = Tensor(shape: [], values: [value]) }
        }
        try expectRefused([AdapterSpec(name: "badalpha")], ["badalpha.safetensors", ".alpha", "alpha must be a finite number"])
        #expect(throws: LoRAError.self) { try manager.validate(url: directory.appendingPathComponent("badalpha.safetensors")) }
    }

    @Test func overflowingAlphaAndBadPEFTMetadata() throws {
        try mutate("kohya", into: "hugealpha") { tensors in
            for key in tensors.keys where key.hasSuffix(".alpha") { tensors[key] = Tensor(shape: [], values: [3e38]) }
        }
        try expectRefused([AdapterSpec(name: "hugealpha")], ["hugealpha.safetensors", "would overflow Float32"])
        let peft = try SafeTensorsFile(url: directory.appendingPathComponent("peft_attn.safetensors"))
        let config = try #require(peft.metadata["lora_adapter_metadata"])
        for (name, edited) in [("rankzero", config.replacingOccurrences(of: "\"unet.r\": 4", with: "\"unet.r\": 0")),
                               ("alphahuge", config.replacingOccurrences(of: "\"unet.lora_alpha\": 8.0", with: "\"unet.lora_alpha\": 1e300"))] {
            #expect(edited != config, "the fixture's metadata changed its spelling: \(config)")
            var metadata = peft.metadata
            metadata["lora_adapter_metadata"] = edited
            try mutate("peft_attn", into: name, metadata: metadata)
            try expectRefused([AdapterSpec(name: name)], ["\(name).safetensors"])
            #expect(throws: LoRAError.self) { try manager.validate(url: directory.appendingPathComponent("\(name).safetensors")) }
        }
    }
}
