// The state behind the routes: readiness, the job queue, metrics, timing rows, logs.
import Foundation
import HotswapPipeline
import HotswapStore
import Hummingbird
import Logging
import NIOCore

/// Where start-up is.
public enum Readiness: Sendable, Equatable {
    case starting
    case ready
    case failed(String)
    case stopping
}

public final class ImageService: @unchecked Sendable {
    public let configuration: ServerConfiguration
    public let generator: any ImageGenerating
    /// The timing database (rows of every request and of the start-up).
    public let store: TimingStore
    public let metrics: ServerMetrics
    public let queue: JobQueue
    /// Every accepted job's status (and the images of asynchronous ones).
    public let jobs = JobRegistry()
    let logger: Logger
    private let lock = NSLock()
    private var _readiness: Readiness = .starting
    private var _warmup: WarmupRecord?
    /// Recent job durations (ms), for Retry-After.
    private var recentJobMs: [Double] = []

    public init(configuration: ServerConfiguration, generator: any ImageGenerating, store: TimingStore,
                metrics: ServerMetrics = ServerMetrics(), logger: Logger = Logger(label: "hotswap.server")) {
        self.configuration = configuration
        self.generator = generator
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.queue = JobQueue(depth: configuration.queueDepth, timeout: configuration.requestTimeout)
        let gauge = metrics.queueDepth
        queue.onDepthChange = { gauge.set(to: Double($0)) }
    }

    public var readiness: Readiness { lock.withLock { _readiness } }
    public var warmup: WarmupRecord? { lock.withLock { _warmup } }

    func setReadiness(_ state: Readiness) {
        lock.withLock { _readiness = state }
        metrics.ready.set(to: state == .ready ? 1.0 : 0.0)
    }

    // MARK: Start and stop

    /// Loads the base, preloads adapters, runs the warm-up pass on the worker thread and records the
    /// warm-up row; then the service is ready.
    public func start() async throws {
        let preload = configuration.preload
        for name in preload where !AdapterName.isValid(name) {
            let message = "--preload \(name): not a valid adapter name"
            setReadiness(.failed(message))
            throw APIError.invalidAdapterName(name)
        }
        removeStaleUploads()
        let generator = self.generator
        logger.info("loading the base model and warming up", metadata: ["preload": .array(preload.map { .string($0) })])
        do {
            let report = try await queue.runExclusive { try generator.warmUp(preload: preload) }
            try store.recordWarmup(report)
            lock.withLock { _warmup = report }
            setReadiness(.ready)
            logger.info("ready", metadata: [
                "model": .string(report.model),
                "base_load_ms": .string(format(report.weightsLoadMs)),
                "page_cache": .string(report.pageCache ?? "mixed"),
                "adapter_load_ms": .string(format(report.adapterLoadMs ?? 0)),
                "warmup_ms": .string(format(report.firstPassMs ?? 0)),
            ])
        } catch {
            setReadiness(.failed("\(error)"))
            logger.error("start-up failed: \(error)")
            throw error
        }
    }

    /// SIGTERM, first step: stop taking jobs and drop the waiting ones (the running one goes on).
    public func beginShutdown() {
        if readiness != .stopping { logger.info("shutting down: no new jobs; finishing the running one") }
        setReadiness(.stopping)
        queue.beginShutdown()
    }

    /// Last step: wait for the running job, end the worker thread, flush the database.
    public func finishShutdown() {
        setReadiness(.stopping)
        queue.stop()
        store.close()
        logger.info("worker stopped, timing database closed")
    }

    // MARK: Helpers

    /// Uploads that a killed process left half-written (`.upload-<UUID>.part`, never visible as
    /// adapters) are removed at start. Replicas may share the adapters folder, so only files no
    /// upload can still be writing go: untouched for longer than the body timeout (plus a minute).
    func removeStaleUploads(now: Date = Date()) {
        let directory = configuration.adaptersDirectory
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for name in names where name.hasPrefix(AdaptersController<BasicRequestContext>.uploadPrefix) && name.hasSuffix(".part") {
            let url = directory.appendingPathComponent(name)
            let modified = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date ?? .distantPast
            guard now.timeIntervalSince(modified) > configuration.bodyTimeout + 60 else { continue }
            do {
                try FileManager.default.removeItem(at: directory.appendingPathComponent(name))
                logger.notice("removed an interrupted upload", metadata: ["file": .string(name)])
            } catch {
                logger.warning("cannot remove an interrupted upload \(name): \(error)")
            }
        }
    }

    func retryAfterSeconds() -> Int {
        let typical = lock.withLock { recentJobMs.isEmpty ? 1000 : recentJobMs.reduce(0, +) / Double(recentJobMs.count) }
        let waiting = Double(queue.waiting + 1)
        return max(1, Int((typical * waiting / 1000).rounded(.up)))
    }

    /// Writes a request's timing row; a failing database is logged, never the request's failure.
    func record(_ row: RequestRecord) {
        do {
            try store.recordRequest(row)
        } catch {
            logger.error("cannot record timing row: \(error)")
        }
    }

    func noteJobDuration(_ ms: Double) {
        lock.withLock {
            recentJobMs.append(ms)
            if recentJobMs.count > 16 { recentJobMs.removeFirst(recentJobMs.count - 16) }
        }
    }
}

func format(_ ms: Double) -> String { String(format: "%.1f", ms) }
