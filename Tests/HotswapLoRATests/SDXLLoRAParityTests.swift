import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
import HotswapModels
@testable import HotswapLoRA
import HotswapPipeline

/// SDXL adapters against diffusers' StableDiffusionXLPipeline + load_lora_weights + set_adapters:
/// PEFT with text_encoder_2 (save_lora_weights' per-component metadata), kohya F16 with SGM block
/// names and lora_te1_/lora_te2_, and the two at once; fuse and runtime modes. Adapters made for the
/// other UNet family are refused naming both bases. References: `make_fixtures.py --only sdxl`.
@Suite struct SDXLLoRAParityTests {
    struct AdapterRef: Decodable, Sendable { let name: String, scale: Float }
    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        let name: String, adapters: [AdapterRef], seed: UInt64, image: String, base_image: String
        var testDescription: String { name }
    }
    struct LoRA: Decodable, Sendable {
        let model: String, adapters_dir: String, negative_prompt: String, steps: Int, guidance: Float
        let width: Int, height: Int, scheduler: String, cases: [Case]
    }
    struct Manifest: Decodable, Sendable { let prompt: String, lora: LoRA }

    static let manifest = try? Fixtures.json("reference/sdxl/manifest.json", as: Manifest.self)
    static let cases: [Case] = manifest?.lora.cases ?? []

    @Test func manifestHasCases() { #expect(Self.cases.count == 3) }

    @Test(arguments: cases)
    func matchesDiffusers(_ c: Case) throws {
        let m = try #require(Self.manifest)
        let model = try StableDiffusionModel(directory: Fixtures.url(m.lora.model))
        let pipeline = StableDiffusionPipeline(model: model)
        let request = GenerationRequest(prompt: m.prompt, negativePrompt: m.lora.negative_prompt, steps: m.lora.steps,
                                        guidance: m.lora.guidance, seed: c.seed, width: m.lora.width, height: m.lora.height,
                                        scheduler: try #require(SchedulerName(rawValue: m.lora.scheduler)))
        let expected = try PNGReader.read(url: Fixtures.url(c.image)).rgb
        let base = try PNGReader.read(url: Fixtures.url(c.base_image)).rgb
        #expect(peakSignalToNoise(try pipeline.generate(request).rgb, base) >= 40)
        for mode in LoRAMode.allCases {
            let manager = AdapterManager(model: model, adaptersDirectory: Fixtures.url(m.lora.adapters_dir),
                                         cacheLimitBytes: 64 << 20, mode: mode)
            try manager.activate(c.adapters.map { AdapterSpec(name: $0.name, scale: $0.scale) })
            let image = try pipeline.generate(request).rgb
            let psnr = peakSignalToNoise(image, expected), vsBase = peakSignalToNoise(image, base)
            #expect(psnr >= 40, "\(mode): PSNR \(psnr) dB")
            #expect(vsBase <= 35, "\(mode): the adapter barely changed the image (\(vsBase) dB)")
            try manager.activate([])
            #expect(peakSignalToNoise(try pipeline.generate(request).rgb, base) >= 40, "\(mode): not restored")
        }
    }

    @Test func adaptersForTheOtherUNetFamilyAreRefusedNamingBothBases() throws {
        let xl = try StableDiffusionModel(directory: Fixtures.url("models/sdxl-tiny"))
        let onXL = AdapterManager(model: xl, adaptersDirectory: nil, cacheLimitBytes: 0, allowsPaths: true)
        do {
            try onXL.activate([AdapterSpec(name: Fixtures.url("lora/sd1-tiny/kohya.safetensors").path)])
            Issue.record("an SD1 adapter was applied to SDXL")
        } catch {
            #expect("\(error)".contains("made for SD1.x/SD2.x; this model is SDXL"), "\(error)")
        }
        let sd1 = try StableDiffusionModel(directory: Fixtures.url("models/sd1-tiny"))
        let onSD1 = AdapterManager(model: sd1, adaptersDirectory: nil, cacheLimitBytes: 0, allowsPaths: true)
        do {
            try onSD1.activate([AdapterSpec(name: Fixtures.url("lora/sdxl-tiny/xl_peft.safetensors").path)])
            Issue.record("an SDXL adapter was applied to SD1")
        } catch {
            #expect("\(error)".contains("made for SDXL"), "\(error)")
        }
    }
}
