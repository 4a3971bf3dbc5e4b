// The real engine behind the server: StableDiffusionPipeline plus an adapter backend.
import Foundation
import HotswapModels
import HotswapPipeline

/// Adapter handling as the generator needs it; `LoRAAdapterBackend` wraps HotswapLoRA's
/// AdapterManager. Threading: `load`/`preload`/`activate` run on the worker thread only.
public protocol AdapterBackend: AnyObject, Sendable {
    /// Called once on the worker thread with the loaded base model.
    func attach(model: StableDiffusionModel) throws
    /// Loads adapters into the cache; returns the milliseconds spent.
    func preload(_ names: [String]) throws -> Double
    /// Makes `adapters` the active set (unloading the previous one).
    func activate(_ adapters: [AdapterRef]) throws -> SwapSummary
    func list() throws -> [AdapterDescription]
    func describe(named name: String) throws -> AdapterDescription?
    func validate(at url: URL, name: String) throws -> AdapterDescription
    /// (name, A1111 short hash) of the active adapters, for the infotext's "Lora hashes".
    func loraHashes() -> [LoraHash]
    func changed(named name: String)
}

public final class PipelineGenerator: ImageGenerating, @unchecked Sendable {
    public let modelDirectory: URL
    public let adapters: any AdapterBackend
    /// Steps of the warm-up pass (at the model's default size, with guidance, as a real request).
    public let warmupSteps: Int

    private let lock = NSLock()
    private var pipeline: StableDiffusionPipeline?     // set once by warmUp, guarded by lock

    public init(modelDirectory: URL, adapters: any AdapterBackend, warmupSteps: Int = 1) {
        self.modelDirectory = modelDirectory
        self.adapters = adapters
        self.warmupSteps = warmupSteps
    }

    public var modelName: String { lock.withLock { pipeline?.model.name } ?? modelDirectory.standardizedFileURL.lastPathComponent }

    public func warmUp(preload: [String]) throws -> WarmupReport {
        let pageCache = PageCache.describe(modelDirectory: modelDirectory)
        var start = DispatchTime.now()
        let model = try StableDiffusionModel(directory: modelDirectory)
        let baseLoadMs = elapsedMs(since: start)
        let pipeline = StableDiffusionPipeline(model: model)
        try adapters.attach(model: model)
        let adapterLoadMs = try adapters.preload(preload)

        start = DispatchTime.now()
        let request = GenerationRequest(prompt: "warm-up", steps: warmupSteps, seed: 0)
        if model.defaultScheduler == nil {
            // A model whose own scheduler is not implemented still serves requests that name one.
            var named = request
            named.scheduler = .euler
            _ = try pipeline.generate(named)
        } else {
            _ = try pipeline.generate(request)
        }
        let warmupMs = elapsedMs(since: start)
        lock.withLock { self.pipeline = pipeline }
        return WarmupReport(modelName: model.name, baseLoadMs: baseLoadMs, pageCache: pageCache, preloaded: preload,
                            adapterLoadMs: adapterLoadMs, warmupMs: warmupMs)
    }

    private func loadedPipeline() throws -> StableDiffusionPipeline {
        guard let pipeline = lock.withLock({ self.pipeline }) else {
            throw AdapterValidationError("the base model is not loaded yet")
        }
        return pipeline
    }

    public func resolve(_ request: GenerationRequest) throws -> (width: Int, height: Int, scheduler: SchedulerName) {
        try loadedPipeline().resolve(request)
    }

    public func generate(_ job: ImageJob, shouldContinue: @escaping () -> Bool) throws -> GenerationOutcome {
        let pipeline = try loadedPipeline()
        let swap = try adapters.activate(job.adapters)
        let image = try pipeline.generate(job.request) { _, _ in shouldContinue() }
        return GenerationOutcome(width: image.width, height: image.height, rgb: image.rgb, seed: image.seed,
                                 scheduler: image.scheduler,
                                 timings: ImageTimings(textEncodeMs: image.timings.textEncodeMs, denoiseMs: image.timings.denoiseMs,
                                                       decodeMs: image.timings.decodeMs),
                                 swap: swap, loraHashes: adapters.loraHashes())
    }

    public func listAdapters() throws -> [AdapterDescription] { try adapters.list() }
    public func describeAdapter(named name: String) throws -> AdapterDescription? { try adapters.describe(named: name) }
    public func validateAdapter(at url: URL, name: String) throws -> AdapterDescription { try adapters.validate(at: url, name: name) }
    public func adapterChanged(named name: String) { adapters.changed(named: name) }
}

func elapsedMs(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
}

/// Lists adapter files in a directory (the listing every backend shares).
enum AdapterDirectory {
    static func names(in directory: URL) -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".safetensors") }
            .map { String($0.dropLast(".safetensors".count)) }
            .filter(AdapterName.isValid)
            .sorted()
    }

    static func size(of url: URL) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
    }
}
