import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
import HotswapModels
@testable import HotswapPipeline

/// Original-format single-file checkpoints (SD1.x F16, SD2.x BF16 768-v with OpenCLIP's fused
/// attention and extra last layer) against diffusers' StableDiffusionPipeline.from_single_file(path,
/// config=folder). Files and references: `python Scripts/make_fixtures.py --only single_file`.
/// Hotswap reads them with no folder: configs from the tensors plus the family defaults in Families/.
@Suite struct SingleFileParityTests {
    struct Case: Decodable, Sendable { let name: String, scheduler: String, steps: Int, guidance: Float, seed: UInt64,
                                       width: Int, height: Int, image: String }
    struct Model: Decodable, Sendable { let file: String, prediction_type: String, cases: [Case] }
    struct XLCase: Decodable, Sendable { let name: String, scheduler: String, steps: Int, guidance: Float, seed: UInt64,
                                         width: Int, height: Int, negative_prompt: String?, image: String }
    struct XL: Decodable, Sendable { let file: String, config: String, cases: [XLCase] }
    struct Manifest: Decodable, Sendable { let prompt: String, negative_prompt: String, models: [String: Model], xl: XL }

    struct Item: CustomTestStringConvertible, Sendable {
        let model: String, file: String, prompt: String, negative: String, c: Case
        var testDescription: String { "\(model)/\(c.name)" }
    }

    static let items: [Item] = {
        guard let m = try? Fixtures.json("reference/single_file/manifest.json", as: Manifest.self) else { return [] }
        return m.models.sorted { $0.key < $1.key }.flatMap { name, model in
            model.cases.map { Item(model: name, file: model.file, prompt: m.prompt, negative: m.negative_prompt, c: $0) }
        }
    }()

    static func scheduler(_ diffusersClass: String) -> SchedulerName? {
        ["EulerDiscreteScheduler": .euler, "DPMSolverMultistepScheduler": .dpmpp2m][diffusersClass]
    }

    @Test func manifestHasBothFamilies() {
        #expect(Set(Self.items.map(\.model)) == ["sd1-tiny", "sd2-tiny"])
    }

    @Test(arguments: items)
    func matchesDiffusersFromSingleFile(_ item: Item) throws {
        let model = try StableDiffusionModel.load(Fixtures.url(item.file))
        #expect(model.family == (item.model == "sd1-tiny" ? .sd1 : .sd2))
        let c = item.c
        let request = GenerationRequest(prompt: item.prompt, negativePrompt: item.negative, steps: c.steps, guidance: c.guidance,
                                        seed: c.seed, width: c.width, height: c.height,
                                        scheduler: try #require(Self.scheduler(c.scheduler)))
        let image = try StableDiffusionPipeline(model: model).generate(request)
        let expected = try PNGReader.read(url: Fixtures.url(c.image))
        #expect(expected.width == image.width && expected.height == image.height)
        let psnr = peakSignalToNoise(image.rgb, expected.rgb)
        #expect(psnr >= 40, "PSNR \(psnr) dB")
    }

    /// An SGM SDXL file (the committed sdxl-tiny folder converted) read with that folder as its config
    /// renders that folder's diffusers references: the XL key rules (conditioner.embedders, bigG's
    /// transposed text_projection, label_emb) lose nothing.
    @Test func sdxlFileWithItsFolderAsConfigRendersTheFolder() throws {
        let xl = try #require(try? Fixtures.json("reference/single_file/manifest.json", as: Manifest.self).xl)
        let model = try StableDiffusionModel.load(Fixtures.url(xl.file), singleFile: SingleFileOptions(configDirectory: Fixtures.url(xl.config)))
        #expect(model.family == .sdxl && model.isXL && model.forceZerosForEmptyPrompt)
        #expect(xl.cases.count == 2)
        for c in xl.cases {
            let request = GenerationRequest(prompt: Self.items.first?.prompt ?? "", negativePrompt: c.negative_prompt, steps: c.steps,
                                            guidance: c.guidance, seed: c.seed, width: c.width, height: c.height,
                                            scheduler: try #require(SchedulerName(rawValue: c.scheduler)))
            let image = try StableDiffusionPipeline(model: model).generate(request)
            let psnr = peakSignalToNoise(image.rgb, try PNGReader.read(url: Fixtures.url(c.image)).rgb)
            #expect(psnr >= 40, "\(c.name): PSNR \(psnr) dB")
        }
    }

    /// An SD2 file as diffusers' convert_diffusers_to_original_stable_diffusion.py writes it: no
    /// text_projection and only the layers the diffusers text encoder has. All of them are used.
    @Test func sd2ConvertedBackFromDiffusersUsesEveryLayer() throws {
        let item = try #require(Self.items.first { $0.model == "sd2-tiny" })
        var tensors = try SafeTensorsFile(url: Fixtures.url(item.file)).allTensors()
        let last = "cond_stage_model.model.transformer.resblocks.2."
        #expect(tensors.keys.contains { $0.hasPrefix(last) })
        tensors = tensors.filter { !$0.key.hasPrefix(last) && !$0.key.hasSuffix("text_projection") && !$0.key.hasSuffix("logit_scale") }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sd2-from-diffusers-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsWriter.write(tensors, to: url, dtype: .BF16)
        let model = try StableDiffusionModel.load(url)
        #expect(model.textEncoder.config.numHiddenLayers == 2)
        let c = item.c
        let request = GenerationRequest(prompt: item.prompt, negativePrompt: item.negative, steps: c.steps, guidance: c.guidance,
                                        seed: c.seed, width: c.width, height: c.height,
                                        scheduler: try #require(Self.scheduler(c.scheduler)))
        let image = try StableDiffusionPipeline(model: model).generate(request)
        let psnr = peakSignalToNoise(image.rgb, try PNGReader.read(url: Fixtures.url(c.image)).rgb)
        #expect(psnr >= 40, "PSNR \(psnr) dB")
    }

    /// The wrong prediction type renders another image: the SD2 default (v_prediction) is used, not ignored.
    @Test func predictionTypeChangesTheSD2Image() throws {
        let item = try #require(Self.items.first { $0.model == "sd2-tiny" })
        let c = item.c
        let eps = try StableDiffusionModel.load(Fixtures.url(item.file), singleFile: SingleFileOptions(predictionType: "epsilon"))
        #expect(eps.schedulerConfig.predictionType == "epsilon")
        let request = GenerationRequest(prompt: item.prompt, negativePrompt: item.negative, steps: c.steps, guidance: c.guidance,
                                        seed: c.seed, width: c.width, height: c.height,
                                        scheduler: try #require(Self.scheduler(c.scheduler)))
        let image = try StableDiffusionPipeline(model: eps).generate(request)
        let expected = try PNGReader.read(url: Fixtures.url(c.image))
        #expect(peakSignalToNoise(image.rgb, expected.rgb) < 30)
    }
}
