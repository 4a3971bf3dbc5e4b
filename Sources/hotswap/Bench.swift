import ArgumentParser
import Foundation
import HotswapCore
import HotswapModels
import HotswapPipeline
import HotswapStore

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time one model component (seconds per forward), model loading, or LoRA swaps (ms); prints one JSON object.",
        subcommands: [UNetBench.self, VAEBench.self, TextBench.self, LoadBench.self, SwapBench.self])
}

struct BenchOptions: ParsableArguments {
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Timed runs after one warm-up run.") var runs: Int = 3

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
    }

    /// Runs `body` once to warm up, then `runs` times; prints the JSON summary.
    func measure(_ name: String, extra: [String: Any], loadSeconds: Double, _ body: () -> Void) throws {
        body()
        OpProfile.reset()
        let freshBefore = BufferPool.freshAllocations
        var seconds: [Double] = []
        for _ in 0..<runs {
            let start = Stopwatch()
            body()
            seconds.append(start.elapsedMs / 1000)
        }
        // Activation buffers the pool could not serve during the timed runs (0: steady state
        // reuses the first run's buffers, no fresh heap allocation of activations).
        let freshBuffers = BufferPool.freshAllocations - freshBefore
        seconds.sort()
        let median = seconds.count % 2 == 1 ? seconds[seconds.count / 2]
            : (seconds[seconds.count / 2 - 1] + seconds[seconds.count / 2]) / 2
        var result: [String: Any] = [
            "bench": name, "runs": runs, "seconds_median": median, "seconds_min": seconds[0],
            "seconds": seconds, "load_seconds": loadSeconds,
            "blas_core": BLAS.coreName, "blas_core_selected_by": BLASCoreSelection.outcome.selectedBy,
            "blas_core_detected": BLASCoreSelection.outcome.detected ?? BLAS.coreName,
            "blas_threads": BLAS.threadCount,
            "fresh_activation_buffers_in_timed_runs": freshBuffers,
        ]
        if let peak = ResidentMemory.peakBytes() { result["peak_rss_gb"] = Double(peak) / Double(1 << 30) }
        result.merge(extra) { $1 }
        if OpProfile.enabled { result["profile_total_over_runs"] = OpProfile.summary() }
        let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Deterministic pseudo-random input values (the benchmark only needs finite, varied numbers).
func benchInput(_ shape: [Int], seed: UInt64 = 0) -> Tensor {
    var generator = TorchGenerator(seed: seed)
    return generator.randn(shape)
}

struct UNetBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unet", abstract: "UNet forward.")
    @OptionGroup var options: BenchOptions
    @Option var width: Int = 512
    @Option var height: Int = 512
    @Option var batch: Int = 1

    func run() throws {
        let start = Date()
        let model = try options.modelOptions.load()
        let load = Date().timeIntervalSince(start)
        let scale = model.vaeScaleFactor
        let sample = benchInput([batch, model.unet.config.inChannels, height / scale, width / scale])
        let contextWidth = model.textEncoder.config.hiddenSize + (model.secondText?.encoder.config.hiddenSize ?? 0)
        let context = benchInput([batch, model.tokenizer.maxLength, contextWidth], seed: 1)
        // SDXL: a pooled embedding and the micro-conditioning time ids, as the pipeline passes them.
        let added = model.secondText.map { second in
            AddedConditions(textEmbeds: benchInput([batch, second.encoder.config.projectionDim ?? 0], seed: 2),
                            timeIds: Array(repeating: [Float(height), Float(width), 0, 0, Float(height), Float(width)], count: batch))
        }
        try options.measure("unet", extra: ["width": width, "height": height, "batch": batch], loadSeconds: load) {
            _ = model.unet(sample, timestep: 500, context: context, added: added)
        }
    }
}

struct VAEBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vae", abstract: "VAE decode (the --vae-decoder's, when given).")
    @OptionGroup var options: BenchOptions
    @Option var width: Int = 512
    @Option var height: Int = 512

    func run() throws {
        let start = Date()
        let model = try options.modelOptions.load()
        let load = Date().timeIntervalSince(start)
        let scale = model.vaeScaleFactor
        let latents = benchInput([1, model.decoder.latentChannels, height / scale, width / scale])
        let decoder = (model.decoder as? AutoencoderTiny).map { "AutoencoderTiny \($0.name)" } ?? "AutoencoderKL"
        try options.measure("vae", extra: ["width": width, "height": height, "decoder": decoder], loadSeconds: load) {
            _ = model.decoder.decode(latents)
        }
    }
}

struct TextBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "text", abstract: "Text encoder(s) (77 tokens; SDXL: both, as encode_prompt runs them).")
    @OptionGroup var options: BenchOptions
    @Option var batch: Int = 2

    func run() throws {
        let start = Date()
        let model = try options.modelOptions.load()
        let load = Date().timeIntervalSince(start)
        let prompt = "a photograph of an astronaut riding a horse"
        let ids = Array(repeating: model.tokenizer.tokenize(prompt), count: batch)
        if let second = model.secondText {
            let ids2 = Array(repeating: second.tokenizer.tokenize(prompt), count: batch)
            try options.measure("text", extra: ["batch": batch, "encoders": 2], loadSeconds: load) {
                _ = model.textEncoder.penultimateAndPooled(ids)
                _ = second.encoder.penultimateAndPooled(ids2)
            }
        } else {
            try options.measure("text", extra: ["batch": batch], loadSeconds: load) {
                _ = model.textEncoder(ids)
            }
        }
    }
}

struct LoadBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "load", abstract: "Loading the model folder (page cache warm after the warm-up run).")
    @OptionGroup var options: BenchOptions

    func run() throws {
        let url = try options.modelOptions.resolveModel()
        var failure: Error?
        try options.measure("load", extra: ["model": url.path], loadSeconds: 0) {
            do { _ = try StableDiffusionModel.load(url, singleFile: options.modelOptions.singleFileOptions) } catch { failure = error }
        }
        if let failure { throw CLIError("cannot load model \(url.path): \(failure)") }
    }
}
