import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
@testable import HotswapModels

/// Reading original-format single files: what is inferred from the tensors, what comes from the
/// family defaults, and every way a file can be wrong (each an error naming the problem).
/// Rendering parity with diffusers: HotswapPipelineTests/SingleFileParityTests.
@Suite struct SingleFileLoadingTests {
    static let sd1 = Fixtures.url("single_file/sd1-tiny.safetensors")
    static let sd2 = Fixtures.url("single_file/sd2-tiny.safetensors")

    final class TempDir {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-single-\(UUID().uuidString)")
        init() { try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        deinit { try? FileManager.default.removeItem(at: url) }
        func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    }

    /// The sd1 file's tensors, edited, written to a new file.
    static func variant(of source: URL, in dir: TempDir, _ edit: (inout [String: Tensor]) -> Void) throws -> URL {
        var tensors = try SafeTensorsFile(url: source).allTensors()
        edit(&tensors)
        let url = dir.file("variant-\(UUID().uuidString).safetensors")
        try SafeTensorsWriter.write(tensors, to: url)
        return url
    }

    static func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    @Test func sd1ConfigsComeFromTensorsAndFamily() throws {
        let c = try SingleFileCheckpoint(url: Self.sd1)
        #expect(c.family == .sd1)
        #expect(c.weightsDType == .F16)
        #expect(c.unet.config["block_out_channels"] == .ints([32, 64]))
        #expect(c.unet.config["layers_per_block"] == .int(2))
        #expect(c.unet.config["down_block_types"] == .strings(["CrossAttnDownBlock2D", "DownBlock2D"]))
        #expect(c.unet.config["up_block_types"] == .strings(["UpBlock2D", "CrossAttnUpBlock2D"]))
        #expect(c.unet.config["cross_attention_dim"] == .int(64))
        #expect(c.unet.config["use_linear_projection"] == .bool(false))
        #expect(c.unet.config["attention_head_dim"] == .int(8))       // SD1's 8 heads: not in the tensors
        #expect(c.unet.config["norm_num_groups"] == .int(32))
        #expect(c.textEncoder.config["hidden_act"] == .string("quick_gelu"))
        #expect(c.textEncoder.config["num_hidden_layers"] == .int(2))
        #expect(c.textEncoder.config["num_attention_heads"] == .int(1))  // 64-channel heads
        #expect(c.vae.config["block_out_channels"] == .ints([32, 32, 32]))
        #expect(c.vae.config["scaling_factor"] == .number("0.18215"))
        #expect(c.scheduler["_class_name"] == .string("PNDMScheduler"))
        #expect(c.ignoredCount >= 14)  // schedule buffers and model_ema.*
        let model = try StableDiffusionModel(checkpoint: c)
        #expect(model.tokenizer.padTokenID == 49407)
        #expect(model.defaultImageSize == 64 * 4)
        #expect(model.name == "sd1-tiny")
    }

    @Test func sd2DropsOpenCLIPsLastLayerAndDefaultsToV() throws {
        let c = try SingleFileCheckpoint(url: Self.sd2)
        #expect(c.family == .sd2)
        #expect(c.weightsDType == .BF16)
        #expect(c.textEncoder.config["num_hidden_layers"] == .int(2))  // the file has 3
        #expect(c.textEncoder.weights["text_model.encoder.layers.2.self_attn.q_proj.weight"] == nil)
        #expect(c.textEncoder.weights["text_model.encoder.layers.1.self_attn.v_proj.bias"]?.shape == [64])
        #expect(c.textEncoder.config["hidden_act"] == .string("gelu"))
        #expect(c.unet.config["use_linear_projection"] == .bool(true))
        #expect(c.unet.config["attention_head_dim"] == .ints([1, 1, 1]))
        #expect(c.scheduler["prediction_type"] == .string("v_prediction"))
        #expect(c.unet.config["sample_size"] == .int(96))
        let model = try StableDiffusionModel(checkpoint: c)
        #expect(model.tokenizer.padTokenID == 0)  // "!"
        let base = try SingleFileCheckpoint(url: Self.sd2, options: SingleFileOptions(predictionType: "epsilon"))
        #expect(base.scheduler["prediction_type"] == .string("epsilon"))
        #expect(base.unet.config["sample_size"] == .int(64))
    }

    /// SDXL (SGM layout): both encoders, bigG's projection transposed, add_embedding's sizes, per-block depth.
    @Test func sdxlConfigsComeFromTensors() throws {
        let url = Fixtures.url("single_file/sdxl-tiny.safetensors")
        // The tiny model's 16-wide text encoder does not have SDXL's 64-channel heads: with the
        // family's configs it is an error naming that, not a wrong image.
        #expect(Self.message { _ = try SingleFileCheckpoint(url: url) }.contains("64-channel heads"))
        // With the folder as config (diffusers' config=), the weights are all mapped; the inference
        // rules, run on them, find the folder's values.
        let withConfig = try SingleFileCheckpoint(url: url, options: SingleFileOptions(configDirectory: Fixtures.url("models/sdxl-tiny")))
        #expect(withConfig.family == .sdxl)
        let te2 = try #require(withConfig.textEncoder2)
        var unet = JSONConfig(members: [])
        try SingleFileCheckpoint.inferUNet(&unet, from: withConfig.unet.weights, layersPerBlock: 2, family: .sdxl, file: "")
        try SingleFileCheckpoint.inferAddition(&unet, from: withConfig.unet.weights, projection: 24, file: "")
        #expect(unet["block_out_channels"] == .ints([16, 32, 32]))
        #expect(unet["down_block_types"] == .strings(["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]))
        #expect(unet["transformer_layers_per_block"] == .ints([3, 2, 3]))  // the mid block's 3 for the block without attention
        #expect(unet["cross_attention_dim"] == .int(48))
        #expect(unet["projection_class_embeddings_input_dim"] == .int(24 + 6 * 8))
        #expect(unet["addition_time_embed_dim"] == .int(8))
        #expect(te2.weights.keys.contains("text_model.encoder.layers.2.self_attn.q_proj.weight"))  // bigG keeps every layer
        // text_projection is stored [width, projection] and applied as x @ proj: diffusers' weight is its transpose.
        let folder = try WeightFiles.load(directory: Fixtures.url("models/sdxl-tiny/text_encoder_2"), baseName: "model")
        #expect(te2.weights["text_projection.weight"]?.shape == [24, 32])
        #expect(te2.weights["text_projection.weight"]?.scalars == folder["text_projection.weight"]?.scalars)
        for family in ModelFamily.allCases where family == .sdxl {
            #expect(try family.defaultConfig("vae")["scaling_factor"] == .number("0.13025"))
            #expect(try family.defaultConfig("text_encoder_2")["architectures"] == .strings(["CLIPTextModelWithProjection"]))
        }
        // It converts to an XL folder that loads.
        let dir = TempDir()
        try withConfig.writeDiffusersFolder(to: dir.file("xl"))
        let converted = try StableDiffusionModel(directory: dir.file("xl"))
        #expect(converted.isXL && converted.secondText?.tokenizer.padTokenID == 0)
    }

    @Test func sidecarsSetThePredictionType() throws {
        let dir = TempDir()
        let file = dir.file("model.safetensors")
        try FileManager.default.copyItem(at: Self.sd2, to: file)
        let yaml = dir.file("model.yaml")
        try "model:\n  params:\n    parameterization: \"v\"  # 768-v\n".write(to: yaml, atomically: true, encoding: .utf8)
        #expect(try SingleFileCheckpoint(url: file).scheduler["prediction_type"] == .string("v_prediction"))
        try "model:\n  params:\n    linear_start: 0.00085\n".write(to: yaml, atomically: true, encoding: .utf8)
        #expect(try SingleFileCheckpoint(url: file).scheduler["prediction_type"] == .string("epsilon"))
        try "model:\n  params:\n    parameterization: \"x0\"\n".write(to: yaml, atomically: true, encoding: .utf8)
        #expect(Self.message { _ = try SingleFileCheckpoint(url: file) }.contains("parameterization 'x0'"))
        // The command line wins over the sidecar.
        let options = SingleFileOptions(predictionType: "v_prediction")
        #expect(try SingleFileCheckpoint(url: file, options: options).scheduler["prediction_type"] == .string("v_prediction"))
        try FileManager.default.removeItem(at: yaml)
        try #"{"prediction_type": "epsilon"}"#.write(to: dir.file("model.json"), atomically: true, encoding: .utf8)
        #expect(try SingleFileCheckpoint(url: file).scheduler["prediction_type"] == .string("epsilon"))
    }

    @Test func truncatedAndForeignFilesAreOneLineErrors() throws {
        let dir = TempDir()
        let data = try Data(contentsOf: Self.sd1)
        let truncated = dir.file("truncated.safetensors")
        try data.prefix(data.count / 2).write(to: truncated)
        let t = Self.message { _ = try StableDiffusionModel.load(truncated) }
        #expect(t.contains("truncated.safetensors") && !t.contains("\n"), "\(t)")

        let l = Self.message { _ = try StableDiffusionModel.load(Fixtures.url("lora/sd1-tiny/kohya.safetensors")) }
        #expect(l.contains("adapter"), "\(l)")

        let other = dir.file("other.safetensors")
        try SafeTensorsWriter.write(["weight": Tensor(zeros: [2, 2])], to: other)
        #expect(Self.message { _ = try StableDiffusionModel.load(other) }.contains("no model.diffusion_model.*"))

        let text = dir.file("text.safetensors")
        try "not a checkpoint".write(to: text, atomically: true, encoding: .utf8)
        #expect(Self.message { _ = try StableDiffusionModel.load(text) }.contains("text.safetensors"))
    }

    @Test func inpaintingAndSDXLAreNamedAndRefused() throws {
        let dir = TempDir()
        let inpaint = try Self.variant(of: Self.sd1, in: dir) {
            $0["model.diffusion_model.input_blocks.0.0.weight"] = Tensor(zeros: [32, 9, 3, 3])
        }
        #expect(Self.message { _ = try SingleFileCheckpoint(url: inpaint) }.contains("inpainting"))
        let xl = try Self.variant(of: Self.sd1, in: dir) {
            $0["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] = Tensor(zeros: [64])
        }
        #expect(Self.message { _ = try SingleFileCheckpoint(url: xl) }.contains("SDXL"))
    }

    @Test func unknownAndMissingTensorsAreListed() throws {
        let dir = TempDir()
        let extra = try Self.variant(of: Self.sd1, in: dir) {
            $0["model.diffusion_model.label_emb.1.0.weight"] = Tensor(zeros: [4, 4])
            $0["first_stage_model.decoder.up.0.block.0.extra.weight"] = Tensor(zeros: [4])
        }
        let e = Self.message { _ = try SingleFileCheckpoint(url: extra) }
        #expect(e.contains("model.diffusion_model.label_emb.1.0.weight") && e.contains("first_stage_model.decoder.up.0.block.0.extra.weight"), "\(e)")
        // SDXL's label_emb on an SD1 UNet: mapped to add_embedding, which an SD1 UNet does not have.
        let xlPart = try Self.variant(of: Self.sd1, in: dir) { $0["model.diffusion_model.label_emb.0.0.weight"] = Tensor(zeros: [4, 4]) }
        #expect(Self.message { _ = try StableDiffusionModel.load(xlPart) }.contains("add_embedding.linear_1.weight"))

        // Two tensors for one weight: the SD1 text encoder again under SDXL's name.
        let twice = try Self.variant(of: Self.sd1, in: dir) {
            $0["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"] = Tensor(zeros: [64])
            $0["conditioner.embedders.1.model.ln_final.weight"] = Tensor(zeros: [64])
        }
        #expect(Self.message { _ = try SingleFileCheckpoint(url: twice) }.contains("are both text_encoder.text_model.final_layer_norm.weight"))

        let missing = try Self.variant(of: Self.sd1, in: dir) { $0["model.diffusion_model.out.2.bias"] = nil }
        let m = Self.message { _ = try StableDiffusionModel.load(missing) }
        #expect(m.contains("conv_out.bias"), "\(m)")

        let wrong = try Self.variant(of: Self.sd1, in: dir) {
            $0["model.diffusion_model.middle_block.1.proj_in.weight"] = Tensor(zeros: [64, 64, 3, 3])
        }
        #expect(Self.message { _ = try StableDiffusionModel.load(wrong) }.contains("mid_block.attentions.0.proj_in.weight"))
    }

    /// Shapes no real file has (empty or mismatched) are errors, never a trap in a layer.
    @Test func degenerateShapesAreErrors() throws {
        let dir = TempDir()
        let edits: [(String, Tensor)] = [
            ("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", Tensor(zeros: [0, 64])),
            ("cond_stage_model.transformer.text_model.embeddings.position_embedding.weight", Tensor(zeros: [77, 32])),
            ("model.diffusion_model.input_blocks.1.0.out_layers.3.weight", Tensor(zeros: [0, 32, 3, 3])),
            ("model.diffusion_model.input_blocks.0.0.weight", Tensor(zeros: [32, 0, 3, 3])),
            ("first_stage_model.decoder.conv_out.weight", Tensor(zeros: [0, 32, 3, 3])),
            ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", Tensor(zeros: [32])),
            ("cond_stage_model.transformer.text_model.embeddings.position_embedding.weight", Tensor(zeros: [10, 64])),
        ]
        for (key, tensor) in edits {
            let url = try Self.variant(of: Self.sd1, in: dir) { $0[key] = tensor }
            #expect(!Self.message { _ = try StableDiffusionModel.load(url) }.isEmpty, "\(key) \(tensor.shape)")
        }
    }

    @Test func convertWritesAFolderThatLoadsToTheSameWeights() throws {
        let dir = TempDir()
        for source in [Self.sd1, Self.sd2] {
            let checkpoint = try SingleFileCheckpoint(url: source)
            let folder = dir.file(source.deletingPathExtension().lastPathComponent)
            try checkpoint.writeDiffusersFolder(to: folder)
            let fromFolder = try StableDiffusionModel(directory: folder)
            let fromFile = try StableDiffusionModel(checkpoint: checkpoint)
            #expect(fromFolder.schedulerConfig.predictionType == fromFile.schedulerConfig.predictionType)
            #expect(fromFolder.tokenizer.padTokenID == fromFile.tokenizer.padTokenID)
            let converted = try WeightFiles.load(directory: folder.appendingPathComponent("unet"), baseName: "diffusion_pytorch_model")
            #expect(Set(converted.keys) == Set(checkpoint.unet.weights.keys))
            for (key, tensor) in checkpoint.unet.weights {
                #expect(converted[key]?.scalars == tensor.scalars, "\(key)")  // F16/BF16 round trip is exact
            }
            let vae = try SafeTensorsFile(url: folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors"))
            #expect(try vae.info("decoder.mid_block.attentions.0.to_q.weight").shape.count == 2)  // linear, as diffusers
            #expect(try vae.info("decoder.mid_block.attentions.0.to_q.weight").dtype == checkpoint.weightsDType)
            // The same file read with the converted folder as its config (diffusers' config=) agrees.
            let withConfig = try SingleFileCheckpoint(url: source, options: SingleFileOptions(configDirectory: folder))
            #expect(withConfig.unet.config["block_out_channels"] == checkpoint.unet.config["block_out_channels"])
            #expect(try StableDiffusionModel(checkpoint: withConfig).textEncoder.config.numHiddenLayers
                == fromFile.textEncoder.config.numHiddenLayers)
            // An existing destination is refused and left as it was.
            let before = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
            #expect(Self.message { try checkpoint.writeDiffusersFolder(to: folder) }.contains("already exists"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() == before)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).allSatisfy { !$0.hasPrefix(".") })
    }

    @Test func everyFamilyHasItsDefaults() throws {
        for family in ModelFamily.allCases {
            for component in ["unet", "vae", "text_encoder", "scheduler_config"] {
                _ = try family.defaultConfig(component)
            }
            _ = try CLIPTokenizer(directory: family.tokenizerDirectory(), vocabularyDirectory: ModelFamily.vocabularyDirectory())
        }
    }
}
