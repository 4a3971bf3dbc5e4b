import Foundation
import HTTPTypes
import HotswapLoRA
import HotswapModels
import HotswapPipeline
import HotswapStore
@testable import HotswapServer

/// A fast stand-in for the engine: solid-colour images, a pretend adapter cache, and gates that
/// hold warm-up or jobs so tests can fill the queue.
final class FakeGenerator: ImageGenerating, @unchecked Sendable {
    let adaptersDirectory: URL
    let limits: RequestLimits
    private let lock = NSLock()
    private var active: [AdapterSpec] = []
    private var cache: Set<String> = []
    private(set) var jobs: [ResolvedRequest] = []
    /// When set, warm-up waits for it.
    let warmupGate: DispatchSemaphore?
    /// When set, each job waits for it (after it started).
    var jobGate: DispatchSemaphore?
    /// Signalled when a job starts.
    let jobStarted = DispatchSemaphore(value: 0)
    var failNext: Error?
    /// When set, each fake denoising step sleeps this long (so progress can be watched).
    var stepDelay: TimeInterval?

    /// What the fake "model" decides: 64x64 by default, a 12-layer text encoder, Euler.
    static let facts = ModelFacts(defaultImageSize: 64, textEncoderLayers: 12,
                                  schedulerConfig: { var config = SchedulerConfig(); config.className = "EulerDiscreteScheduler"; return config }())

    init(adaptersDirectory: URL, limits: RequestLimits, warmupGate: DispatchSemaphore? = nil) {
        self.adaptersDirectory = adaptersDirectory
        self.limits = limits
        self.warmupGate = warmupGate
    }

    var modelName: String { "fake-model" }

    var jobCount: Int { lock.withLock { jobs.count } }

    func exists(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: adaptersDirectory.appendingPathComponent(name + ".safetensors").path)
    }

    func warmUp(preload: [String]) throws -> WarmupRecord {
        warmupGate?.wait()
        for name in preload {
            guard exists(name) else { throw LoRAError.unknownAdapter(name: name, directory: adaptersDirectory.path, available: []) }
            _ = lock.withLock { cache.insert(name) }
        }
        return WarmupRecord(model: modelName, startedAt: Date(), weightsLoadMs: 1.5, firstPassMs: 2, pageCache: "warm",
                            preloaded: preload, adapterLoadMs: 0.5)
    }

    /// The engine's own validator, on the fake model's facts.
    func prepare(_ request: GenerationRequest) throws -> ResolvedRequest {
        let resolved = try request.resolve(for: Self.facts, limits: limits)
        for adapter in request.adapters where !exists(adapter.name) {
            throw LoRAError.unknownAdapter(name: adapter.name, directory: adaptersDirectory.path, available: [])
        }
        return resolved
    }

    func render(_ job: ResolvedRequest, record: inout RequestRecord, progress: @escaping (Int, Int) -> Bool) throws -> RenderedImage {
        lock.withLock { jobs.append(job) }
        jobStarted.signal()
        if let gate = lock.withLock({ jobGate }) { gate.wait() }
        if let error = lock.withLock({ () -> Error? in defer { failNext = nil }; return failNext }) { throw error }
        // One progress call per step, as the real pipeline does after each denoising step.
        for step in 1...max(1, job.request.steps) {
            guard progress(step, job.request.steps) else { throw GenerationError.cancelled }
            if let delay = lock.withLock({ stepDelay }) { Thread.sleep(forTimeInterval: delay) }
        }
        let adapters = job.request.adapters
        record.adapters = job.request.adaptersLabel
        record.steps = job.request.steps
        record.seed = job.request.seed
        record.swap = try lock.withLock {
            for adapter in adapters where !exists(adapter.name) {
                throw LoRAError.unknownAdapter(name: adapter.name, directory: adaptersDirectory.path, available: [])
            }
            let result: SwapReport
            if adapters == active {
                result = SwapReport(cache: adapters.isEmpty ? .none : .reuse)
            } else if adapters.allSatisfy({ cache.contains($0.name) }) {
                result = SwapReport(cache: adapters.isEmpty ? .none : .hit, unloadMs: 1, applyMs: 2, totalMs: 3)
            } else {
                result = SwapReport(cache: .miss, unloadMs: 1, loadMs: 5, applyMs: 2, totalMs: 8)
            }
            active = adapters
            for adapter in adapters { cache.insert(adapter.name) }
            return result
        }
        record.generation = GenerationTimings(textEncodeMs: 1, denoiseMs: 10, decodeMs: 2)
        let rgb = [UInt8](repeating: 128, count: job.width * job.height * 3)
        let infotext = Infotext(prompt: job.request.writtenPrompt ?? job.request.prompt, steps: job.request.steps, sampler: job.scheduler.samplerLabel,
                                cfgScale: Double(job.request.guidance), seed: job.request.seed, width: job.width,
                                height: job.height, modelName: modelName,
                                extraParameters: adapters.isEmpty ? [] : [("Adapters", adapters.map(\.displayDescription).joined(separator: " "))])
        let png = try PNGWriter.encode(rgb: rgb, width: job.width, height: job.height, text: [("parameters", infotext.text)])
        return RenderedImage(png: png, width: job.width, height: job.height, seed: job.request.seed, scheduler: job.scheduler,
                             infotext: infotext.text)
    }

    func listAdapters() throws -> [AdapterDescription] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: adaptersDirectory.path)) ?? []
        return try files.filter { $0.hasSuffix(".safetensors") }.map { String($0.dropLast(12)) }.sorted()
            .compactMap { try describeAdapter(named: $0) }
    }

    func describeAdapter(named name: String) throws -> AdapterDescription? {
        let url = adaptersDirectory.appendingPathComponent(name + ".safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let size = ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
        return lock.withLock {
            AdapterDescription(name: name, format: "fake", rank: 4, alpha: 4, targets: ["unet"],
                               size: size, cached: cache.contains(name), active: active.contains { $0.name == name })
        }
    }

    /// A "valid" fake adapter file starts with FAKE-LORA.
    func validateAdapter(at url: URL, name: String) throws -> AdapterDescription {
        let data = try Data(contentsOf: url)
        guard data.starts(with: Data("FAKE-LORA".utf8)) else { throw AdapterValidationError("not a fake LoRA file") }
        return AdapterDescription(name: name, format: "fake", rank: 4, alpha: 4, targets: ["unet"], size: Int64(data.count))
    }

    func adapterMetadata(named name: String) -> [String: String]? {
        exists(name) ? ["ss_output_name": "\(name)-alias"] : nil
    }

    func adapterChanged(named name: String) {
        _ = lock.withLock { cache.remove(name) }
    }
}
