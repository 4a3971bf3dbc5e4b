import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
@testable import HotswapModels

/// Each model block against diffusers/transformers on the random-weight fixture folders.
/// Expected tensors: Tests/Fixtures/reference/<model>/*.safetensors, written by
/// `python Scripts/make_fixtures.py --only models` (diffusers 0.42.1, transformers 5.23, torch 2.15),
/// which loads each saved folder back with from_pretrained(torch_dtype=float32) and runs it.
/// Tolerance: relative error <= 1e-4 of the reference's largest magnitude.
@Suite struct ModelParityTests {
    static let models = ["sd1-tiny", "sd2-tiny"]

    func reference(_ model: String, _ component: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(url: Fixtures.url("reference/\(model)/\(component).safetensors"))
    }

    func folder(_ model: String) -> URL { Fixtures.url("models/\(model)") }

    @Test(arguments: models)
    func textEncoder(model: String) throws {
        let dir = folder(model).appendingPathComponent("text_encoder")
        let config = try loadConfig(CLIPTextConfig.self, from: dir.appendingPathComponent("config.json"))
        let encoder = try CLIPTextModel(config: config, weights: WeightFiles.load(directory: dir, baseName: "model"))
        struct Manifest: Decodable { struct Model: Decodable { struct Text: Decodable { let input_ids: [[Int]] }; let text_encoder: Text }; let models: [String: Model] }
        let ids = try Fixtures.json("reference/manifest.json", as: Manifest.self).models[model]!.text_encoder.input_ids
        let ref = try reference(model, "text_encoder")
        expectClose(encoder(ids).scalars, try ref.tensor("last_hidden_state").scalars, rtol: 1e-4)
        expectClose(encoder(ids, clipSkip: 1).scalars, try ref.tensor("clip_skip_1").scalars, rtol: 1e-4)
    }

    @Test(arguments: models)
    func unet(model: String) throws {
        let dir = folder(model).appendingPathComponent("unet")
        let config = try loadConfig(UNet2DConditionConfig.self, from: dir.appendingPathComponent("config.json"))
        let unet = try UNet2DConditionModel(config: config, weights: WeightFiles.load(directory: dir, baseName: "diffusion_pytorch_model"))
        let ref = try reference(model, "unet")
        for batch in ["b1", "b2"] {
            let out = unet(try ref.tensor("\(batch).sample"), timestep: try ref.tensor("\(batch).timestep").scalars[0],
                           context: try ref.tensor("\(batch).encoder_hidden_states"))
            expectClose(out.scalars, try ref.tensor("\(batch).out").scalars, rtol: 1e-4)
        }
    }

    @Test(arguments: models)
    func vaeDecode(model: String) throws {
        let dir = folder(model).appendingPathComponent("vae")
        let config = try loadConfig(AutoencoderKLConfig.self, from: dir.appendingPathComponent("config.json"))
        let vae = try AutoencoderKL(config: config, weights: WeightFiles.load(directory: dir, baseName: "diffusion_pytorch_model"))
        let ref = try reference(model, "vae")
        for name in ["square", "wide"] {
            let latents = try ref.tensor("\(name).latents") * (1 / config.scalingFactor)
            expectClose(vae.decode(latents).scalars, try ref.tensor("\(name).out").scalars, rtol: 1e-4)
        }
    }

    @Test func strictLoadingNamesMissingAndUnexpectedWeights() throws {
        let dir = folder("sd1-tiny").appendingPathComponent("vae")
        let config = try loadConfig(AutoencoderKLConfig.self, from: dir.appendingPathComponent("config.json"))
        var weights = try WeightFiles.load(directory: dir, baseName: "diffusion_pytorch_model")
        weights.removeValue(forKey: "decoder.conv_in.weight")
        weights["decoder.extra.weight"] = Tensor(zeros: [2])
        weights["post_quant_conv.bias"] = Tensor(zeros: [5])
        do {
            _ = try AutoencoderKL(config: config, weights: weights)
            Issue.record("loading should fail")
        } catch let error as ModelLoadingError {
            let message = error.description
            #expect(message.contains("decoder.conv_in.weight"))
            #expect(message.contains("decoder.extra.weight"))
            #expect(message.contains("post_quant_conv.bias is [5], expected [4]"))
        }
    }
}
