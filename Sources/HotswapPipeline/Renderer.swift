// The one render path: `hotswap render` and every HTTP route go through `Renderer.prepare` (all
// request checks) and `Renderer.render` (adapter swap, generation, infotext, PNG), filling one
// timing record on the way.
import Foundation
import HotswapLoRA
import HotswapModels
import HotswapStore

/// A rendered request: the PNG file's bytes and what the caller reports about it.
public struct RenderedImage: Sendable {
    public var png: Data
    public var width: Int
    public var height: Int
    public var seed: UInt64
    public var scheduler: SchedulerName
    /// The A1111 infotext written into the PNG's `parameters` chunk.
    public var infotext: String

    public init(png: Data, width: Int, height: Int, seed: UInt64, scheduler: SchedulerName, infotext: String) {
        self.png = png
        self.width = width
        self.height = height
        self.seed = seed
        self.scheduler = scheduler
        self.infotext = infotext
    }
}

/// A loaded base model with its adapter manager. Threading: `render` (and anything that swaps
/// adapters) runs on one thread at a time; `prepare` and the adapter listing may run on any.
public final class Renderer: @unchecked Sendable {
    public let pipeline: StableDiffusionPipeline
    public let adapters: AdapterManager
    public let limits: RequestLimits

    public var model: StableDiffusionModel { pipeline.model }

    public init(model: StableDiffusionModel, adapters: AdapterManager, limits: RequestLimits = .cli) {
        pipeline = StableDiffusionPipeline(model: model)
        self.adapters = adapters
        self.limits = limits
    }

    /// How the adapters of a loaded model behave.
    public struct AdapterOptions: Sendable {
        public var directory: URL?
        /// Whether a request may name an adapter by path (the CLI) or only by name in `directory`.
        public var allowsPaths: Bool
        public var cacheLimitBytes: Int
        public var mode: LoRAMode
        public var alphaConvention: AlphaConvention

        public init(directory: URL?, allowsPaths: Bool, cacheLimitBytes: Int = 1 << 30, mode: LoRAMode = .fuse,
                    alphaConvention: AlphaConvention = .diffusers) {
            self.directory = directory
            self.allowsPaths = allowsPaths
            self.cacheLimitBytes = cacheLimitBytes
            self.mode = mode
            self.alphaConvention = alphaConvention
        }
    }

    /// Loads the base model (timed, with the page cache probed first), loads `preload` into the
    /// adapter cache and, with `warmupSteps`, runs one warm-up generation: the warm-up record.
    /// `modelDirectory`: a diffusers folder or a single-file checkpoint (read with `singleFile`).
    public static func load(modelDirectory: URL, singleFile: SingleFileOptions = .init(), vaeDecoder: URL? = nil,
                            adapters options: AdapterOptions,
                            limits: RequestLimits = .cli, preload: [String]? = nil,
                            warmupSteps: Int? = nil) throws -> (Renderer, WarmupRecord) {
        let startedAt = Date()
        let pageCache = PageCache.label(model: modelDirectory)
        let load = Stopwatch()
        let model = try StableDiffusionModel.load(modelDirectory, singleFile: singleFile, vaeDecoder: vaeDecoder)
        let weightsLoadMs = load.elapsedMs
        let manager = AdapterManager(model: model, adaptersDirectory: options.directory, cacheLimitBytes: options.cacheLimitBytes,
                                     mode: options.mode, alphaConvention: options.alphaConvention, allowsPaths: options.allowsPaths)
        let renderer = Renderer(model: model, adapters: manager, limits: limits)
        var adapterLoadMs: Double?
        if let preload {
            adapterLoadMs = try preload.reduce(0) { $0 + (try manager.activate([AdapterSpec(name: $1)]).loadMs) }
            try manager.activate([])
        }
        var firstPassMs: Double?
        if let warmupSteps {
            let warm = Stopwatch()
            // A model whose own scheduler is not implemented still serves requests that name one.
            let request = GenerationRequest(prompt: "warm-up", steps: warmupSteps, seed: 0,
                                            scheduler: model.defaultScheduler == nil ? .euler : nil)
            _ = try renderer.pipeline.generate(request)
            firstPassMs = warm.elapsedMs
        }
        let record = WarmupRecord(model: model.name, startedAt: startedAt, weightsLoadMs: weightsLoadMs,
                                  firstPassMs: firstPassMs, pageCache: pageCache, preloaded: preload,
                                  adapterLoadMs: adapterLoadMs)
        return (renderer, record)
    }

    /// Every check of a request: the fields, the model's limits, and that each adapter exists
    /// (`LoRAError.unknownAdapter` otherwise). Touches no weights.
    public func prepare(_ request: GenerationRequest) throws -> ResolvedRequest {
        let resolved = try pipeline.resolve(request, limits: limits)
        for spec in request.adapters { _ = try adapters.resolve(spec.name) }
        return resolved
    }

    /// Activates the request's adapters (unloading the previous set), generates, writes the
    /// infotext and encodes the PNG. `record` gets each phase as it completes, so a failure
    /// leaves the times of the phases it reached. `progress(step, total)` returning false cancels.
    public func render(_ resolved: ResolvedRequest, record: inout RequestRecord,
                       progress: ((Int, Int) -> Bool)? = nil) throws -> RenderedImage {
        let request = resolved.request
        record.adapters = request.adaptersLabel
        record.family = model.familyLabel
        record.steps = request.steps
        record.width = resolved.width
        record.height = resolved.height
        record.scheduler = resolved.scheduler.rawValue
        record.seed = request.seed

        record.swap = try adapters.activate(request.adapters)
        let image = try pipeline.generate(resolved, progress: progress)
        record.generation = image.timings

        let encode = Stopwatch()
        let infotext = Infotext(
            prompt: request.writtenPrompt ?? request.prompt, negativePrompt: request.negativePrompt ?? "", steps: request.steps,
            sampler: resolved.scheduler.samplerLabel, cfgScale: Double(request.guidance), seed: image.seed,
            width: image.width, height: image.height, modelName: model.name, clipSkip: request.clipSkip.map { $0 + 1 },
            loraHashes: adapters.loraHashes(),
            extraParameters: [("Model family", model.familyLabel)]
                + ((model.decoder as? AutoencoderTiny).map { [("VAE", $0.name)] } ?? [])
                + (request.adapters.isEmpty ? [] : [("Adapters", request.adapters.map(\.displayDescription).joined(separator: " "))]))
        let png = try PNGWriter.encode(rgb: image.rgb, width: image.width, height: image.height,
                                       text: [(key: "parameters", value: infotext.text)])
        record.pngMs = encode.elapsedMs
        return RenderedImage(png: png, width: image.width, height: image.height, seed: image.seed,
                             scheduler: image.scheduler, infotext: infotext.text)
    }
}
