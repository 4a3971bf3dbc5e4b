import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
import HotswapModels
@testable import HotswapLoRA
import HotswapPipeline

/// Images with adapters against diffusers' StableDiffusionPipeline + load_lora_weights +
/// set_adapters(names, adapter_weights=scales) (PEFT layers, not fused) on the random-weight
/// fixture models, for every file layout, scales other than 1 and two adapters at once.
/// Expected images: Tests/Fixtures/reference/lora/, listed in reference/lora/manifest.json, written
/// by `python Scripts/make_fixtures.py --only lora` (Scripts/fixtures/lora.py).
/// Tolerances: PSNR >= 40 dB against diffusers, in both fuse and runtime modes; and the adapter
/// must visibly change the image: PSNR <= 35 dB (the fixture script also asserts a mean |difference| > 3 levels) against diffusers' image of the same request
/// without adapters.
@Suite struct LoRAParityTests {
    struct AdapterRef: Decodable, Sendable { let name: String; let file: String; let scale: Float }
    struct Case: Decodable, CustomTestStringConvertible, Sendable {
        let name: String, model: String, seed: UInt64
        let adapters: [AdapterRef]
        let image: String, base_image: String
        var testDescription: String { name }
    }
    struct Manifest: Decodable {
        let prompt: String, negative_prompt: String, steps: Int, guidance: Float, width: Int, height: Int
        let cases: [Case]
    }

    static let manifest: Manifest? = try? Fixtures.json("reference/lora/manifest.json")
    static let cases: [Case] = manifest?.cases ?? []

    @Test func manifestHasCases() {
        #expect(Self.cases.count >= 10)
    }

    static func request(_ c: Case, _ m: Manifest) -> GenerationRequest {
        GenerationRequest(prompt: m.prompt, negativePrompt: m.negative_prompt, steps: m.steps, guidance: m.guidance,
                          seed: c.seed, width: m.width, height: m.height, scheduler: .euler)
    }

    @Test(arguments: cases)
    func matchesDiffusers(_ c: Case) throws {
        let m = try #require(Self.manifest)
        let model = try StableDiffusionModel(directory: Fixtures.url("models/\(c.model)"))
        let pipeline = StableDiffusionPipeline(model: model)
        let expected = try PNGReader.read(url: Fixtures.url(c.image))
        let base = try PNGReader.read(url: Fixtures.url(c.base_image))
        for mode in LoRAMode.allCases {
            let manager = AdapterManager(model: model, adaptersDirectory: Fixtures.url("lora/\(c.model)"),
                                         cacheLimitBytes: 64 << 20, mode: mode)
            let report = try manager.activate(c.adapters.map { AdapterSpec(name: $0.name, scale: $0.scale) })
            #expect(report.cache == .miss)
            let image = try pipeline.generate(Self.request(c, m))
            let psnr = peakSignalToNoise(image.rgb, expected.rgb)
            let vsBase = peakSignalToNoise(image.rgb, base.rgb)
            print("\(c.name) [\(mode)]: PSNR \(String(format: "%.2f", psnr)) dB vs diffusers, \(String(format: "%.2f", vsBase)) dB vs no adapter")
            #expect(psnr >= 40, "\(mode): PSNR \(psnr) dB")
            #expect(vsBase <= 35, "\(mode): the adapter barely changed the image (PSNR \(vsBase) dB vs no adapter)")
            try manager.activate([])
        }
    }

    /// Without adapters after swaps, the image is byte-identical to diffusers' base within the
    /// engine's parity (and, more strictly, to this engine's own fresh render).
    @Test func noAdapterAfterSwapsMatchesFreshRun() throws {
        let m = try #require(Self.manifest)
        let c = try #require(Self.cases.first { $0.model == "sd1-tiny" })
        let fresh = try StableDiffusionPipeline(model: StableDiffusionModel(directory: Fixtures.url("models/sd1-tiny")))
            .generate(Self.request(c, m))
        let model = try StableDiffusionModel(directory: Fixtures.url("models/sd1-tiny"))
        let manager = AdapterManager(model: model, adaptersDirectory: Fixtures.url("lora/sd1-tiny"), cacheLimitBytes: 64 << 20)
        try manager.activate([AdapterSpec(name: "locon", scale: 0.6), AdapterSpec(name: "kohya", scale: 1.1)])
        _ = try StableDiffusionPipeline(model: model).generate(Self.request(c, m))
        try manager.activate([])
        let after = try StableDiffusionPipeline(model: model).generate(Self.request(c, m))
        #expect(after.rgb == fresh.rgb)
        #expect(after.latents.scalars == fresh.latents.scalars)
        let base = try PNGReader.read(url: Fixtures.url(c.base_image))
        #expect(peakSignalToNoise(after.rgb, base.rgb) >= 40)
    }
}

/// PSNR in dB of 8-bit images (infinity when identical).
func peakSignalToNoise(_ a: [UInt8], _ b: [UInt8]) -> Double {
    precondition(a.count == b.count)
    var squared = 0.0
    for i in 0..<a.count {
        let d = Double(a[i]) - Double(b[i])
        squared += d * d
    }
    let mse = squared / Double(a.count)
    return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
}
