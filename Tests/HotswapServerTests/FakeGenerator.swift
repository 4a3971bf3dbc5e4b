import Foundation
import HTTPTypes
import HotswapPipeline
@testable import HotswapServer

/// A fast stand-in for the engine: solid-colour images, a pretend adapter cache, and gates that
/// hold warm-up or jobs so tests can fill the queue.
final class FakeGenerator: ImageGenerating, @unchecked Sendable {
    let adaptersDirectory: URL
    private let lock = NSLock()
    private var active: [AdapterRef] = []
    private var cache: Set<String> = []
    private(set) var jobs: [ImageJob] = []
    /// When set, warm-up waits for it.
    let warmupGate: DispatchSemaphore?
    /// When set, each job waits for it (after it started).
    var jobGate: DispatchSemaphore?
    /// Signalled when a job starts.
    let jobStarted = DispatchSemaphore(value: 0)
    var failNext: Error?

    init(adaptersDirectory: URL, warmupGate: DispatchSemaphore? = nil) {
        self.adaptersDirectory = adaptersDirectory
        self.warmupGate = warmupGate
    }

    var modelName: String { "fake-model" }

    var jobCount: Int { lock.withLock { jobs.count } }

    func warmUp(preload: [String]) throws -> WarmupReport {
        warmupGate?.wait()
        for name in preload {
            guard FileManager.default.fileExists(atPath: adaptersDirectory.appendingPathComponent(name + ".safetensors").path)
            else { throw AdapterMissingError(name: name) }
            _ = lock.withLock { cache.insert(name) }
        }
        return WarmupReport(modelName: modelName, baseLoadMs: 1.5, pageCache: "warm", preloaded: preload,
                            adapterLoadMs: 0.5, warmupMs: 2)
    }

    func resolve(_ request: GenerationRequest) throws -> (width: Int, height: Int, scheduler: SchedulerName) {
        let width = request.width ?? 64, height = request.height ?? 64
        if let clipSkip = request.clipSkip, clipSkip >= 12 { throw GenerationError.invalidClipSkip(clipSkip, layers: 12) }
        return (width, height, request.scheduler ?? .euler)
    }

    func generate(_ job: ImageJob, shouldContinue: @escaping () -> Bool) throws -> GenerationOutcome {
        lock.withLock { jobs.append(job) }
        jobStarted.signal()
        if let gate = lock.withLock({ jobGate }) { gate.wait() }
        if let error = lock.withLock({ () -> Error? in defer { failNext = nil }; return failNext }) { throw error }
        guard shouldContinue() else { throw GenerationError.cancelled }
        let swap: SwapSummary = try lock.withLock {
            for adapter in job.adapters {
                guard FileManager.default.fileExists(atPath: adaptersDirectory.appendingPathComponent(adapter.name + ".safetensors").path)
                else { throw AdapterMissingError(name: adapter.name) }
            }
            let result: SwapSummary
            if job.adapters == active {
                result = SwapSummary(cache: job.adapters.isEmpty ? .none : .reuse)
            } else if job.adapters.allSatisfy({ cache.contains($0.name) }) {
                result = SwapSummary(cache: job.adapters.isEmpty ? .none : .hit, unloadMs: 1, applyMs: 2, totalMs: 3)
            } else {
                result = SwapSummary(cache: .miss, unloadMs: 1, loadMs: 5, applyMs: 2, totalMs: 8)
            }
            active = job.adapters
            for adapter in job.adapters { cache.insert(adapter.name) }
            return result
        }
        let rgb = [UInt8](repeating: 128, count: job.width * job.height * 3)
        return GenerationOutcome(width: job.width, height: job.height, rgb: rgb, seed: job.request.seed,
                                 scheduler: job.scheduler,
                                 timings: ImageTimings(textEncodeMs: 1, denoiseMs: 10, decodeMs: 2), swap: swap)
    }

    func listAdapters() throws -> [AdapterDescription] {
        try AdapterDirectory.names(in: adaptersDirectory).compactMap { try describeAdapter(named: $0) }
    }

    func describeAdapter(named name: String) throws -> AdapterDescription? {
        let url = adaptersDirectory.appendingPathComponent(name + ".safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return lock.withLock {
            AdapterDescription(name: name, format: "fake", rank: 4, alpha: 4, targets: ["unet"],
                               size: AdapterDirectory.size(of: url), cached: cache.contains(name),
                               active: active.contains { $0.name == name })
        }
    }

    /// A "valid" fake adapter file starts with FAKE-LORA.
    func validateAdapter(at url: URL, name: String) throws -> AdapterDescription {
        let data = try Data(contentsOf: url)
        guard data.starts(with: Data("FAKE-LORA".utf8)) else { throw AdapterValidationError("not a fake LoRA file") }
        return AdapterDescription(name: name, format: "fake", rank: 4, alpha: 4, targets: ["unet"], size: Int64(data.count))
    }

    func adapterChanged(named name: String) {
        _ = lock.withLock { cache.remove(name) }
    }
}
