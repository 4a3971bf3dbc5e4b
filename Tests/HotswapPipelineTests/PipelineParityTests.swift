import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
import HotswapModels
@testable import HotswapPipeline

/// End-to-end txt2img against diffusers' StableDiffusionPipeline on the random-weight fixture
/// folders, for every scheduler, with and without guidance, non-square, clip_skip.
/// Expected images and latents: Tests/Fixtures/reference/<model>/pipeline/, listed in
/// reference/manifest.json "pipeline_cases", written by `python Scripts/make_fixtures.py --only models`.
/// Tolerances: image PSNR >= 40 dB against diffusers' PNG; final latents relative error <= 1e-3
/// (several UNet passes compound float32 rounding differences).
@Suite struct PipelineParityTests {
    struct Case: Decodable, CustomTestStringConvertible, Sendable {
        let name: String, model: String, scheduler: String, prompt: String
        let negative_prompt: String?
        let steps: Int, guidance: Float, seed: UInt64, width: Int, height: Int
        let clip_skip: Int?
        let files: [String: String]
        var testDescription: String { name }
    }
    struct Manifest: Decodable { let pipeline_cases: [Case] }

    static let cases: [Case] = (try? Fixtures.json("reference/manifest.json", as: Manifest.self).pipeline_cases) ?? []

    @Test func manifestHasCases() {
        #expect(Self.cases.count >= 20)
    }

    @Test(arguments: cases)
    func matchesDiffusers(_ c: Case) throws {
        let model = try StableDiffusionModel(directory: Fixtures.url("models/\(c.model)"))
        let pipeline = StableDiffusionPipeline(model: model)
        let scheduler = try #require(SchedulerName(rawValue: c.scheduler))
        let request = GenerationRequest(prompt: c.prompt, negativePrompt: c.negative_prompt, steps: c.steps,
                                        guidance: c.guidance, seed: c.seed, width: c.width, height: c.height,
                                        scheduler: scheduler, clipSkip: c.clip_skip)
        let image = try pipeline.generate(request)
        let expectedLatents = try SafeTensorsFile(url: Fixtures.url(c.files["latents"]!)).tensor("latents")
        expectClose(image.latents.scalars, expectedLatents.scalars, rtol: 1e-3)
        let expected = try PNGReader.read(url: Fixtures.url(c.files["image"]!))
        #expect(expected.width == image.width && expected.height == image.height)
        let psnr = peakSignalToNoise(image.rgb, expected.rgb)
        #expect(psnr >= 40, "PSNR \(psnr) dB")
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
