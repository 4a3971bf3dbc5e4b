import Foundation
import HotswapTestSupport
import Testing
import HotswapPipeline

/// Runs the built `hotswap` binary the way a user does and checks exit status, the one-line
/// error, and that a failed render leaves no PNG behind.
@Suite struct RenderCommandTests {
    static let model = Fixtures.url("models/sd1-tiny").path

    func run(_ arguments: [String]) throws -> HotswapProcess.Result {
        try HotswapProcess.run(arguments)
    }

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func rendersPNGWithInfotext() throws {
        let dir = try temporaryDirectory()
        let out = dir.appendingPathComponent("cat.png")
        let result = try run(["render", "--model", Self.model, "--prompt", "a red circle", "--steps", "2",
                              "--seed", "7", "--scheduler", "euler-a", "--out", out.path, "--quiet"])
        #expect(result.status == 0, "\(result.stderr)")
        let png = try PNGReader.read(url: out)
        #expect(png.width == 64 && png.height == 64)
        let parameters = try #require(png.text["parameters"])
        #expect(parameters.contains("Steps: 2, Sampler: Euler a"))
        #expect(parameters.contains("Seed: 7"))
    }

    @Test(arguments: [
        (["--steps", "0"], "steps"),
        (["--steps", "1001"], "steps"),
        (["--width", "65"], "width"),
        (["--height", "0"], "height"),
        (["--scheduler", "heun-x"], "unknown scheduler 'heun-x'"),
        (["--clip-skip", "9"], "clip_skip"),
        (["--guidance", "nan"], "guidance"),
    ])
    func rejectsBadInput(extra: [String], mentions: String) throws {
        let dir = try temporaryDirectory()
        let out = dir.appendingPathComponent("out.png")
        let result = try run(["render", "--model", Self.model, "--prompt", "x", "--out", out.path, "--quiet"] + extra)
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("error: ") && result.stderr.contains(mentions), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one line: \(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    @Test func missingModelFolder() throws {
        let dir = try temporaryDirectory()
        let result = try run(["render", "--model", dir.appendingPathComponent("nope").path, "--prompt", "x",
                              "--out", dir.appendingPathComponent("o.png").path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("nope"), "\(result.stderr)")
    }

    @Test func corruptWeightsNameTheFileAndLeaveNoPNG() throws {
        let dir = try temporaryDirectory()
        let copy = dir.appendingPathComponent("model")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Self.model), to: copy)
        let weights = copy.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
        let data = try Data(contentsOf: weights)
        try data.prefix(data.count / 2).write(to: weights)
        let out = dir.appendingPathComponent("o.png")
        let result = try run(["render", "--model", copy.path, "--prompt", "x", "--out", out.path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("diffusion_pytorch_model.safetensors"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    @Test func missingOutputFolder() throws {
        let dir = try temporaryDirectory()
        let result = try run(["render", "--model", Self.model, "--prompt", "x",
                              "--out", dir.appendingPathComponent("no/such/dir/o.png").path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("does not exist"), "\(result.stderr)")
    }
}

/// `adapters inspect` says what a file is and exits non-zero when it cannot be used; `serve`
/// refuses out-of-range options before it starts (no overflow trap).
@Suite struct AdapterAndServeOptionTests {
    @Test func inspectExitsNonZeroForUnusableFiles() throws {
        let good = try HotswapProcess.run(["adapters", "inspect", Fixtures.url("lora/sd1-tiny/kohya.safetensors").path])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.contains("format:"))
        // A model's weights are no adapter.
        let vae = try HotswapProcess.run(["adapters", "inspect",
                                          Fixtures.url("models/sd1-tiny/vae/diffusion_pytorch_model.safetensors").path])
        #expect(vae.status != 0 && vae.stderr.contains("not a usable adapter"), "\(vae.stderr)")
        // A file that does not fit the model given.
        let sd2 = try HotswapProcess.run(["adapters", "inspect", Fixtures.url("lora/sd2-tiny/peft_attn.safetensors").path,
                                          "--model", Fixtures.url("models/sd1-tiny").path])
        #expect(sd2.status != 0 && sd2.stderr.contains("does not fit"), "\(sd2.stderr)")
    }

    @Test(arguments: [["--max-adapter-mb", "9000000000000000"], ["--max-adapter-mb=-5"], ["--cache-mb", "9000000000000000"],
                      ["--header-timeout", "0"], ["--max-connections", "0"], ["--queue-depth=-1"]])
    func serveRefusesOutOfRangeOptions(options: [String]) throws {
        let result = try HotswapProcess.run(["serve", "--model", Fixtures.url("models/sd1-tiny").path, "--port", "0"] + options)
        #expect(result.status != 0 && result.status != 132 && result.stderr.contains("must be"), "\(result.status): \(result.stderr)")
    }
}
