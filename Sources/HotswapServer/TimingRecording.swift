// Where the server writes its timing rows (the SQLite file behind --db, read by
// Scripts/timing-report) — behind a protocol so router tests can keep rows in memory.
import Foundation

/// One image request as the timing database stores it.
public struct RequestTiming: Sendable, Equatable, Codable {
    public var requestID: String
    /// Seconds since 1970 when the request arrived.
    public var startedAt: Double
    /// The adapter set as `name:scale` joined by ", " ("" for the base model alone), as
    /// HotswapStore's RequestRecord writes it.
    public var adapters: String
    /// HTTP status answered.
    public var status: Int
    /// "ok", or why the job did not produce an image.
    public var outcome: String
    public var cache: String
    public var queueMs: Double
    public var unloadMs: Double
    public var loadMs: Double
    public var applyMs: Double
    public var swapMs: Double
    public var textEncodeMs: Double
    public var denoiseMs: Double
    public var decodeMs: Double
    public var inferenceMs: Double
    public var totalMs: Double
    public var steps: Int
    public var width: Int
    public var height: Int
    public var seed: UInt64
    public var scheduler: String
    /// The error message when outcome is not "ok".
    public var error: String?

    public init(requestID: String, startedAt: Double, adapters: String, status: Int, outcome: String, cache: String,
                queueMs: Double, unloadMs: Double, loadMs: Double, applyMs: Double, swapMs: Double,
                textEncodeMs: Double, denoiseMs: Double, decodeMs: Double, inferenceMs: Double, totalMs: Double,
                steps: Int, width: Int, height: Int, seed: UInt64, scheduler: String, error: String? = nil) {
        self.requestID = requestID
        self.startedAt = startedAt
        self.adapters = adapters
        self.status = status
        self.outcome = outcome
        self.cache = cache
        self.queueMs = queueMs
        self.unloadMs = unloadMs
        self.loadMs = loadMs
        self.applyMs = applyMs
        self.swapMs = swapMs
        self.textEncodeMs = textEncodeMs
        self.denoiseMs = denoiseMs
        self.decodeMs = decodeMs
        self.inferenceMs = inferenceMs
        self.totalMs = totalMs
        self.steps = steps
        self.width = width
        self.height = height
        self.seed = seed
        self.scheduler = scheduler
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case requestID = "request_id", startedAt = "started_at", adapters, status, outcome, cache
        case queueMs = "queue_ms", unloadMs = "unload_ms", loadMs = "load_ms", applyMs = "apply_ms", swapMs = "swap_ms"
        case textEncodeMs = "text_encode_ms", denoiseMs = "denoise_ms", decodeMs = "decode_ms"
        case inferenceMs = "inference_ms", totalMs = "total_ms", steps, width, height, seed, scheduler, error
    }
}

public protocol TimingRecording: Sendable {
    func recordWarmup(_ report: WarmupReport) throws
    func recordRequest(_ timing: RequestTiming) throws
    /// Newest first.
    func latestRequests(limit: Int) throws -> [RequestTiming]
    /// Flushes and closes the database; later calls do nothing.
    func close()
}

/// Keeps rows in memory (tests, or `serve` without --db).
public final class MemoryTimingRecorder: TimingRecording, @unchecked Sendable {
    private let lock = NSLock()
    private var warmups: [WarmupReport] = []
    private var requests: [RequestTiming] = []

    public init() {}

    public func recordWarmup(_ report: WarmupReport) throws { lock.withLock { warmups.append(report) } }
    public func recordRequest(_ timing: RequestTiming) throws { lock.withLock { requests.append(timing) } }
    public func latestRequests(limit: Int) throws -> [RequestTiming] {
        lock.withLock { Array(requests.suffix(limit).reversed()) }
    }
    public func close() {}

    public var warmupRows: [WarmupReport] { lock.withLock { warmups } }
    public var requestRows: [RequestTiming] { lock.withLock { requests } }
}
