import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
import HotswapModels
@testable import HotswapPipeline

/// AutoencoderTiny (TAESD) as the decoder, against diffusers: the decoder alone on a non-square
/// latent, and whole pipelines built with `vae=AutoencoderTiny` (SD1 and SDXL shapes). The original
/// taesd_decoder.safetensors layout decodes exactly like the diffusers folder it came from.
/// References: `python Scripts/make_fixtures.py --only taesd`. Images PSNR >= 40 dB, tensors 1e-4 relative.
@Suite struct TAESDParityTests {
    struct Case: Decodable, Sendable {
        let name: String, scheduler: String, steps: Int, guidance: Float, seed: UInt64, width: Int, height: Int, image: String
    }
    struct Decoder: Decodable, Sendable { let path: String, base: String, decode: String, cases: [Case] }
    struct Original: Decodable, Sendable { let file: String, same_as: String }
    struct Manifest: Decodable, Sendable { let prompt: String, decoders: [String: Decoder], original_layout: Original }

    struct Item: CustomTestStringConvertible, Sendable {
        let decoder: Decoder, prompt: String, c: Case
        var testDescription: String { "\(decoder.path)/\(c.name)" }
    }

    static let manifest = try? Fixtures.json("reference/taesd/manifest.json", as: Manifest.self)
    static let names: [String] = manifest.map { $0.decoders.keys.sorted() } ?? []
    static let items: [Item] = manifest.map { m in
        m.decoders.sorted { $0.key < $1.key }.flatMap { _, d in d.cases.map { Item(decoder: d, prompt: m.prompt, c: $0) } }
    } ?? []

    @Test func manifestHasBothShapes() {
        #expect(Self.names == ["taesd-tiny", "taesdxl-tiny"])
        #expect(Self.items.count >= 3)
    }

    @Test(arguments: names)
    func decoderMatchesDiffusers(_ name: String) throws {
        let entry = try #require(Self.manifest?.decoders[name])
        let tiny = try AutoencoderTiny.load(Fixtures.url(entry.path))
        let refs = try SafeTensorsFile(url: Fixtures.url(entry.decode))
        let out = tiny.decode(try refs.tensor("latents"))
        let expected = try refs.tensor("sample")
        #expect(out.shape == expected.shape)
        expectClose(out.scalars, expected.scalars)
    }

    @Test func originalLayoutFileDecodesLikeTheFolder() throws {
        let m = try #require(Self.manifest)
        let folder = try AutoencoderTiny.load(Fixtures.url(try #require(m.decoders[m.original_layout.same_as]).path))
        let file = try AutoencoderTiny.load(Fixtures.url(m.original_layout.file))
        #expect(file.config.numDecoderBlocks == folder.config.numDecoderBlocks)
        #expect(file.config.decoderBlockOutChannels == folder.config.decoderBlockOutChannels)
        #expect(file.upscale == 8 && file.name == "taesd_decoder")
        var generator = TorchGenerator(seed: 3)
        let latents = generator.randn([1, 4, 5, 7])
        #expect(file.decode(latents).scalars == folder.decode(latents).scalars)
    }

    @Test(arguments: items)
    func imagesMatchDiffusers(_ item: Item) throws {
        let model = try StableDiffusionModel.load(Fixtures.url(item.decoder.base), vaeDecoder: Fixtures.url(item.decoder.path))
        #expect(model.decoder is AutoencoderTiny)
        let c = item.c
        let request = GenerationRequest(prompt: item.prompt, steps: c.steps, guidance: c.guidance, seed: c.seed,
                                        width: c.width, height: c.height, scheduler: try #require(SchedulerName(rawValue: c.scheduler)))
        let image = try StableDiffusionPipeline(model: model).generate(request)
        let expected = try PNGReader.read(url: Fixtures.url(c.image))
        #expect(expected.width == image.width && expected.height == image.height)
        let psnr = peakSignalToNoise(image.rgb, expected.rgb)
        #expect(psnr >= 40, "PSNR \(psnr) dB")
    }

    /// A decoder for another latent scale, a file that is no TAESD, and configs it cannot run are
    /// load errors that name the problem.
    @Test func mismatchedOrForeignDecodersAreRefused() throws {
        // taesdxl-tiny upsamples 4x; sd1-tiny's VAE 8x.
        #expect {
            try StableDiffusionModel.load(Fixtures.url("models/sd1-tiny"), vaeDecoder: Fixtures.url("models/taesdxl-tiny"))
        } throws: { "\($0)".contains("4x") && "\($0)".contains("8x") }
        // A LoRA file is not a decoder.
        let lora = try #require(FileManager.default.enumerator(atPath: Fixtures.url("lora").path)?
            .compactMap { $0 as? String }.first { $0.hasSuffix(".safetensors") })
        #expect { try AutoencoderTiny.load(Fixtures.url("lora").appendingPathComponent(lora)) } throws: {
            "\($0)".contains("not a TAESD decoder")
        }
        #expect { try AutoencoderTiny.load(Fixtures.url("models/no-such-taesd")) } throws: { _ in true }
        let weights = try WeightFiles.load(directory: Fixtures.url("models/taesd-tiny"), baseName: "diffusion_pytorch_model")
        let base = try AutoencoderTiny.load(Fixtures.url("models/taesd-tiny")).config
        for (field, edit) in [("act_fn", { (c: inout AutoencoderTinyConfig) in c.actFn = "silu" }),
                              ("decoder_block_out_channels", { $0.decoderBlockOutChannels = [16, 16, 8, 16] }),
                              ("num_decoder_blocks", { $0.numDecoderBlocks = [3, 3, 3] }),
                              ("config", { $0.upsamplingScalingFactor = 0 })] {
            var config = base
            edit(&config)
            #expect { try AutoencoderTiny(config: config, weights: weights, url: Fixtures.url("models/taesd-tiny")) } throws: {
                "\($0)".contains(field)
            }
        }
        // Missing weights are listed (one block fewer than the file holds: an unused tensor).
        var fewer = base
        fewer.numDecoderBlocks = [3, 3, 2, 1]
        #expect { try AutoencoderTiny(config: fewer, weights: weights, url: Fixtures.url("models/taesd-tiny")) } throws: { _ in true }
    }
}
