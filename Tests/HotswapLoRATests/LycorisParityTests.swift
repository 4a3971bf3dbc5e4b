import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
import HotswapModels
@testable import HotswapLoRA
import HotswapPipeline

/// Adapters beyond plain LoRA (LoHa, LoKr, Tucker cores, DoRA in both spellings, LoRA biases, full
/// diffs) against images of the tiny SD1 model with the adapter merged into its weights in torch
/// by the file-formats issue's rules, and against diffusers' own render for the files diffusers
/// loads (PEFT DoRA, PEFT lora_B.bias). Written by `python Scripts/make_fixtures.py --only lycoris`
/// (Scripts/fixtures/lycoris.py). PSNR >= 40 dB, and each adapter visibly changes the image.
/// Runtime mode applies the low-rank ones the same way and refuses the fuse-only ones by name.
@Suite(.serialized) struct LycorisParityTests {
    struct AdapterRef: Decodable, Sendable { let name: String; let file: String; let scale: Float }
    struct Case: Decodable, CustomTestStringConvertible, Sendable {
        let name: String, seed: UInt64
        let adapters: [AdapterRef]
        let image: String, base_image: String
        let diffusers_image: String?
        var testDescription: String { name }
    }
    struct Manifest: Decodable {
        let model: String, prompt: String, negative_prompt: String, steps: Int, guidance: Float, width: Int, height: Int
        let cases: [Case]
    }

    static let manifest: Manifest? = try? Fixtures.json("reference/lycoris/manifest.json")
    static let cases: [Case] = manifest?.cases ?? []
    /// Files that apply at runtime too (low-rank weights and biases).
    static let runtimeCapable: Set<String> = ["locon_tucker", "peft_bias", "kohya_bias"]

    @Test func manifestHasCases() {
        #expect(Self.cases.count >= 12)
    }

    static func request(_ c: Case, _ m: Manifest) -> GenerationRequest {
        GenerationRequest(prompt: m.prompt, negativePrompt: m.negative_prompt, steps: m.steps, guidance: m.guidance,
                          seed: c.seed, width: m.width, height: m.height, scheduler: .euler)
    }

    @Test(arguments: cases)
    func matchesMergedReference(_ c: Case) throws {
        let m = try #require(Self.manifest)
        let model = try StableDiffusionModel(directory: Fixtures.url(m.model))
        let pipeline = StableDiffusionPipeline(model: model)
        let expected = try PNGReader.read(url: Fixtures.url(c.image))
        let base = try PNGReader.read(url: Fixtures.url(c.base_image))
        let specs = c.adapters.map { AdapterSpec(name: $0.name, scale: $0.scale) }
        // Exact restore is checked on the weights and biases themselves (a render could differ in
        // the last bit when other tests change OpenBLAS' thread count meanwhile).
        let before = AdapterSwapTests.weightHashes(model)
        for mode in LoRAMode.allCases {
            let manager = AdapterManager(model: model, adaptersDirectory: Fixtures.url("lycoris/sd1-tiny"),
                                         cacheLimitBytes: 64 << 20, mode: mode)
            if mode == .runtime && !c.adapters.allSatisfy({ Self.runtimeCapable.contains($0.name) }) {
                #expect { try manager.activate(specs) } throws: { error in
                    guard case LoRAError.fuseOnly = error else { return false }
                    return "\(error)".contains("--lora-mode fuse")
                }
                // Nothing was left applied.
                let after = AdapterSwapTests.weightHashes(model)
                #expect(after.base == before.base && after.active == before.base && after.identical)
                continue
            }
            try manager.activate(specs)
            let image = try pipeline.generate(Self.request(c, m))
            let psnr = peakSignalToNoise(image.rgb, expected.rgb)
            let vsBase = peakSignalToNoise(image.rgb, base.rgb)
            print("\(c.name) [\(mode)]: PSNR \(String(format: "%.2f", psnr)) dB vs merged reference, \(String(format: "%.2f", vsBase)) dB vs no adapter")
            #expect(psnr >= 40, "\(mode): PSNR \(psnr) dB")
            #expect(vsBase <= 35, "\(mode): the adapter barely changed the image (PSNR \(vsBase) dB vs no adapter)")
            if let file = c.diffusers_image {
                let psnrDiffusers = peakSignalToNoise(image.rgb, try PNGReader.read(url: Fixtures.url(file)).rgb)
                #expect(psnrDiffusers >= 40, "\(mode): PSNR \(psnrDiffusers) dB vs diffusers")
            }
            // Exact restore: weights and biases back to the checkpoint's own tensors.
            try manager.activate([])
            let after = AdapterSwapTests.weightHashes(model)
            #expect(after.base == before.base && after.active == before.base && after.identical)
        }
    }

    /// What `adapters inspect` and the API report for each file.
    @Test func inspectTellsTheType() throws {
        let expected: [String: (type: String, runtime: Bool)] = [
            "loha": ("loha", false), "loha_tucker": ("loha", false), "lokr": ("lokr", false), "lokr_tucker": ("lokr", false),
            "locon_tucker": ("locon", true), "dora": ("dora", false), "peft_dora": ("dora", false),
            "peft_bias": ("locon", true), "kohya_bias": ("locon", true), "full_diff": ("diff", false),
        ]
        for (name, want) in expected {
            let info = AdapterInfo(file: try AdapterFile(url: Fixtures.url("lycoris/sd1-tiny/\(name).safetensors")), name: name)
            #expect(info.type == want.type, "\(name): \(info.type)")
            #expect(info.runtimeCapable == want.runtime, "\(name)")
            #expect(info.base == "SD1.x" || info.base == "SD1.x/SD2.x" || info.base.hasPrefix("unknown"), "\(name): \(info.base)")
            #expect(info.parameterCount > 0)
        }
    }

    /// A runtime-mode server refuses fuse-only files at upload (validate), not at every request.
    @Test func runtimeModeValidationRefusesFuseOnlyFiles() throws {
        let m = try #require(Self.manifest)
        let model = try StableDiffusionModel(directory: Fixtures.url(m.model))
        let runtime = AdapterManager(model: model, adaptersDirectory: Fixtures.url("lycoris/sd1-tiny"), cacheLimitBytes: 8 << 20, mode: .runtime)
        let fuse = AdapterManager(model: model, adaptersDirectory: Fixtures.url("lycoris/sd1-tiny"), cacheLimitBytes: 8 << 20, mode: .fuse)
        for name in ["loha", "lokr", "dora", "peft_dora", "full_diff"] {
            let url = Fixtures.url("lycoris/sd1-tiny/\(name).safetensors")
            #expect(throws: LoRAError.self, "\(name)") { try runtime.validate(url: url) }
            #expect(try fuse.validate(url: url).fitsModel == true)
        }
        for name in ["locon_tucker", "peft_bias", "kohya_bias"] {
            #expect(try runtime.validate(url: Fixtures.url("lycoris/sd1-tiny/\(name).safetensors")).fitsModel == true)
        }
    }
}
