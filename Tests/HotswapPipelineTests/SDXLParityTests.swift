import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
import HotswapModels
@testable import HotswapPipeline

/// SDXL folders against diffusers' StableDiffusionXLPipeline: both text encoders' penultimate
/// states and the pooled projection, the UNet with text_time conditioning, and images for several
/// schedulers with and without guidance, a zeroed (absent) and an empty negative prompt, clip skip,
/// non-square sizes, and a Turbo-style folder at 1 step and guidance 0.
/// References: `python Scripts/make_fixtures.py --only sdxl`. Images PSNR >= 40 dB, tensors 1e-4 relative.
@Suite struct SDXLParityTests {
    struct Case: Decodable, Sendable {
        let name: String, scheduler: String, steps: Int, guidance: Float, seed: UInt64, width: Int, height: Int
        let negative_prompt: String?, clip_skip: Int?, image: String
    }
    struct Model: Decodable, Sendable { let path: String, tensors: String, input_ids: [[Int]], unet_timestep: Float, cases: [Case] }
    struct Turbo: Decodable, Sendable { let path: String, cases: [Case] }
    struct Manifest: Decodable, Sendable { let prompt: String, models: [String: Model], sd_turbo: Turbo }

    struct Item: CustomTestStringConvertible, Sendable {
        let model: String, path: String, prompt: String, c: Case
        var testDescription: String { "\(model)/\(c.name)" }
    }

    static let manifest = try? Fixtures.json("reference/sdxl/manifest.json", as: Manifest.self)
    static let items: [Item] = manifest.map { m in
        m.models.sorted { $0.key < $1.key }.flatMap { name, model in
            model.cases.map { Item(model: name, path: model.path, prompt: m.prompt, c: $0) }
        }
    } ?? []
    static let models: [String] = manifest.map { $0.models.keys.sorted() } ?? []

    @Test func manifestHasEveryShape() {
        #expect(Self.models == ["sdxl-tiny", "sdxl-tiny-flat", "sdxl-turbo-tiny"])
        #expect(Self.items.count >= 10)
    }

    @Test(arguments: models)
    func textEncodersAndUNetMatch(_ name: String) throws {
        let entry = try #require(Self.manifest?.models[name])
        let model = try StableDiffusionModel(directory: Fixtures.url(entry.path))
        #expect(model.isXL && model.forceZerosForEmptyPrompt)
        let second = try #require(model.secondText)
        #expect(model.tokenizer.tokenize(Self.manifest!.prompt) == entry.input_ids[0])
        #expect(second.tokenizer.tokenize(Self.manifest!.prompt) == entry.input_ids[1])
        let refs = try SafeTensorsFile(url: Fixtures.url(entry.tensors))
        let first = model.textEncoder.penultimateAndPooled([entry.input_ids[0]])
        expectClose(first.hidden.scalars, try refs.tensor("te1.penultimate").scalars)
        #expect(first.pooled == nil)
        let (hidden2, pooled) = second.encoder.penultimateAndPooled([entry.input_ids[1]])
        expectClose(hidden2.scalars, try refs.tensor("te2.penultimate").scalars)
        expectClose(try #require(pooled).scalars, try refs.tensor("te2.pooled").scalars)

        let timeIds = try refs.tensor("unet.time_ids")
        let rows = (0..<2).map { Array(timeIds.scalars[$0 * 6..<($0 + 1) * 6]) }
        let out = model.unet(try refs.tensor("unet.sample"), timestep: entry.unet_timestep,
                             context: try refs.tensor("unet.encoder_hidden_states"),
                             added: AddedConditions(textEmbeds: try refs.tensor("unet.text_embeds"), timeIds: rows))
        expectClose(out.scalars, try refs.tensor("unet.out").scalars)
    }

    @Test(arguments: items)
    func imagesMatchDiffusers(_ item: Item) throws {
        let model = try StableDiffusionModel(directory: Fixtures.url(item.path))
        let c = item.c
        let request = GenerationRequest(prompt: item.prompt, negativePrompt: c.negative_prompt, steps: c.steps, guidance: c.guidance,
                                        seed: c.seed, width: c.width, height: c.height,
                                        scheduler: try #require(SchedulerName(rawValue: c.scheduler)), clipSkip: c.clip_skip)
        let image = try StableDiffusionPipeline(model: model).generate(request)
        let expected = try PNGReader.read(url: Fixtures.url(c.image))
        #expect(expected.width == image.width && expected.height == image.height)
        let psnr = peakSignalToNoise(image.rgb, expected.rgb)
        #expect(psnr >= 40, "PSNR \(psnr) dB")
    }

    /// SD-Turbo: the SD2.1 architecture with a trailing-spaced Euler scheduler, 1-2 steps at guidance 0.
    @Test func sdTurboMatchesDiffusers() throws {
        let turbo = try #require(Self.manifest?.sd_turbo)
        let model = try StableDiffusionModel(directory: Fixtures.url(turbo.path))
        #expect(!model.isXL && model.schedulerConfig.timestepSpacing == "trailing")
        #expect(turbo.cases.count == 3)
        for c in turbo.cases {
            let request = GenerationRequest(prompt: Self.manifest!.prompt, steps: c.steps, guidance: c.guidance, seed: c.seed,
                                            width: c.width, height: c.height, scheduler: try #require(SchedulerName(rawValue: c.scheduler)))
            let image = try StableDiffusionPipeline(model: model).generate(request)
            let psnr = peakSignalToNoise(image.rgb, try PNGReader.read(url: Fixtures.url(c.image)).rgb)
            #expect(psnr >= 40, "\(c.name): PSNR \(psnr) dB")
        }
    }

    /// An absent negative prompt is zeros (force_zeros_for_empty_prompt), an empty one is the
    /// encoding of "": the two render differently.
    @Test func absentAndEmptyNegativePromptsDiffer() throws {
        let model = try StableDiffusionModel(directory: Fixtures.url("models/sdxl-tiny"))
        let pipeline = StableDiffusionPipeline(model: model)
        func render(_ negative: String?) throws -> [UInt8] {
            try pipeline.generate(GenerationRequest(prompt: "a cat", negativePrompt: negative, steps: 2, guidance: 7.5, seed: 3,
                                                    width: 64, height: 64, scheduler: .euler)).rgb
        }
        #expect(try render(nil) != render(""))
    }
}
