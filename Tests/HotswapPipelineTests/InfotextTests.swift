import Foundation
import HotswapTestSupport
import Testing
@testable import HotswapPipeline

@Suite("A1111 infotext")
struct InfotextTests {
    func sample() -> Infotext {
        Infotext(prompt: "a cat in a hat, best quality", negativePrompt: "blurry, lowres", steps: 20, sampler: "Euler a",
                 scheduleType: "Karras", cfgScale: 7, seed: 42, width: 512, height: 768,
                 modelName: "v1-5-pruned-emaonly", modelHash: "6ce0161689", clipSkip: 2,
                 loraHashes: [("pixel", "0123456789ab"), ("style:v2,final", "ba9876543210")])
    }

    @Test("full infotext in A1111's exact format and field order")
    func fullFormat() {
        #expect(sample().text == """
        a cat in a hat, best quality
        Negative prompt: blurry, lowres
        Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, \
        Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, \
        Lora hashes: "pixel: 0123456789ab, stylev2final: ba9876543210", Version: hotswap 0.1.0
        """)
    }

    @Test("minimal infotext: no negative prompt line, no optional fields, clip skip 1 left out")
    func minimal() {
        let info = Infotext(prompt: "cat", steps: 30, sampler: "DPM++ 2M", cfgScale: 7.5, seed: 123_456_789_012,
                            width: 640, height: 512, clipSkip: 1, version: nil)
        #expect(info.text == "cat\nSteps: 30, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: 123456789012, Size: 640x512")
    }

    @Test("CFG scale prints like Python: 7, 7.5, 0.1, 12")
    func cfgFormatting() {
        #expect(Infotext.formatNumber(7) == "7")
        #expect(Infotext.formatNumber(7.5) == "7.5")
        #expect(Infotext.formatNumber(0.1) == "0.1")
        #expect(Infotext.formatNumber(12) == "12")
        #expect(Infotext.formatNumber(1.25) == "1.25")
    }

    @Test("values with ',', ':' or newlines are JSON-quoted like infotext_utils.quote")
    func quoting() {
        #expect(Infotext.quote("plain value") == "plain value")
        #expect(Infotext.quote("a, b") == "\"a, b\"")
        #expect(Infotext.quote("x: y") == "\"x: y\"")
        #expect(Infotext.quote("say \"hi\", \\ ok") == #""say \"hi\", \\ ok""#)
        #expect(Infotext.quote("line1\nline2") == #""line1\nline2""#)
        #expect(Infotext.quote("猫, é") == "\"猫, é\"")  // ensure_ascii=False
        var info = sample()
        info.modelName = "my model, v2: final"
        #expect(info.text.contains(#"Model: "my model, v2: final", "#))
        // The prompt itself is never quoted.
        #expect(info.text.hasPrefix("a cat in a hat, best quality\n"))
    }

    @Test("parse follows A1111's parse_generation_parameters")
    func parseA1111Example() {
        // The example from A1111's docstring.
        let text = """
        girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, heavy makeup, by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), (coquettish), detailed, intricate
        Negative prompt: ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, disfigured, poorly drawn face, mutation, mutated, (extra_limb), (ugly), (poorly drawn hands), messy drawing
        Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b
        """
        let p = Infotext.parse(text)
        #expect(p["Prompt"]?.hasPrefix("girl with an artist's beret") == true)
        #expect(p["Negative prompt"]?.hasSuffix("messy drawing") == true)
        #expect(p["Steps"] == "20")
        #expect(p["Sampler"] == "Euler a")
        #expect(p["CFG scale"] == "7")
        #expect(p["Seed"] == "965400086")
        #expect(p["Size-1"] == "512")
        #expect(p["Size-2"] == "512")
        #expect(p["Model hash"] == "45dee52b")
        #expect(p["Size"] == nil)
    }

    @Test("parse: a last line with fewer than 3 parameters belongs to the prompt")
    func parseShortLastLine() {
        let p = Infotext.parse("a cat\nStyle: nice")
        #expect(p["Prompt"] == "a cat\nStyle: nice")
        #expect(p["Style"] == nil)
        #expect(p["Negative prompt"] == "")
    }

    @Test("round trip through parse", arguments: [
        Infotext(prompt: "a cat in a hat, best quality", negativePrompt: "blurry", steps: 20, sampler: "Euler a",
                 scheduleType: "Karras", cfgScale: 7, seed: 42, width: 512, height: 512, modelName: "sd15",
                 modelHash: "abcdef1234", clipSkip: 2, loraHashes: [("a", "0123456789ab"), ("b", "ba9876543210")]),
        Infotext(prompt: "multi\nline prompt: with colon", negativePrompt: "neg\nsecond line", steps: 1,
                 sampler: "DPM++ 2M", cfgScale: 12.5, seed: 0, width: 64, height: 128),
        Infotext(prompt: "猫 🎩 \"quoted\"", steps: 50, sampler: "DDIM", cfgScale: 1, seed: UInt64(UInt32.max) + 5,
                 width: 1024, height: 576, modelName: "odd \"name\", with: punctuation \\ here", version: nil),
    ])
    func roundTrip(info: Infotext) throws {
        let text = info.text
        let parsed = try #require(Infotext(parsing: text), "could not parse:\n\(text)")
        #expect(parsed == info, "\(text)\n---\n\(parsed.text)")
        #expect(parsed.text == text)
        let p = Infotext.parse(text)
        #expect(p["Prompt"] == info.prompt)
        #expect(p["Negative prompt"] == info.negativePrompt)
        #expect(p["Model"] == info.modelName)
    }

    @Test("parse gives each key as A1111 would, unquoting Lora hashes")
    func parseFields() {
        let p = Infotext.parse(sample().text)
        #expect(p["Schedule type"] == "Karras")
        #expect(p["Clip skip"] == "2")
        #expect(p["Lora hashes"] == "pixel: 0123456789ab, stylev2final: ba9876543210")
        #expect(p["Version"] == "hotswap 0.1.0")
        #expect(p["Size-1"] == "512" && p["Size-2"] == "768")
    }

    @Test("extra parameters go after Clip skip and before Lora hashes")
    func extraParameters() {
        var info = sample()
        info.extraParameters = [("Denoising strength", "0.75"), ("Note", "a, b")]
        #expect(info.text.contains(#"Clip skip: 2, Denoising strength: 0.75, Note: "a, b", Lora hashes: "#))
    }

    @Test("an infotext in a PNG survives the round trip")
    func inPNG() throws {
        let info = sample()
        let data = try PNGWriter.encode(rgb: [1, 2, 3], width: 1, height: 1, text: [("parameters", info.text)])
        let text = try #require(try PNGReader.read(data).text["parameters"])
        #expect(text == info.text)
        #expect(Infotext(parsing: text)?.text == info.text)
    }
}
