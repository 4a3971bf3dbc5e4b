// The timing records, one type per concept, shared by the pipeline, the LoRA swapper, the CLI,
// the server (logs, headers, /metrics, /v1/timings) and the SQLite tables below.
import Foundation

/// Milliseconds since a start, on the monotonic clock.
public struct Stopwatch: Sendable {
    private let start = ContinuousClock.now
    public init() {}
    public var elapsedMs: Double {
        let elapsed = start.duration(to: .now).components
        return Double(elapsed.seconds) * 1000 + Double(elapsed.attoseconds) / 1e15
    }
}

/// Where a swap's adapters came from (the X-Adapter-Cache header says it too).
public enum CacheOutcome: String, Sendable, Codable, CaseIterable {
    /// No adapters wanted and none active.
    case none
    /// The wanted set was already active: nothing done.
    case reuse
    /// Every adapter came from the cache (no file read).
    case hit
    /// At least one adapter was read from its file.
    case miss
}

/// What one adapter activation did and how long each part took (milliseconds).
public struct SwapReport: Sendable, Equatable {
    public var cache: CacheOutcome
    /// Restoring the layers of the previous set to their base weights (and freeing buffers).
    public var unloadMs: Double = 0
    /// Reading and parsing files (cache misses only).
    public var loadMs: Double = 0
    /// Computing and installing the new weights.
    public var applyMs: Double = 0
    public var totalMs: Double = 0
    /// Per adapter, in request order: hit or miss (reuse/none when nothing was looked up). Not stored.
    public var outcomes: [CacheOutcome] = []
    /// Layers now changed by adapters. Not stored.
    public var layers: Int = 0
    /// The set's fused weights were kept from an earlier activation and installed as they were
    /// (no fuse). Not stored.
    public var reusedFusedWeights = false

    public init(cache: CacheOutcome, unloadMs: Double = 0, loadMs: Double = 0, applyMs: Double = 0, totalMs: Double = 0) {
        self.cache = cache
        self.unloadMs = unloadMs
        self.loadMs = loadMs
        self.applyMs = applyMs
        self.totalMs = totalMs
    }

    /// A swap in the sense of `hotswap_adapter_swaps_total`: a new set applied, or the previous set
    /// unloaded for a request without adapters.
    public var changedWeights: Bool { cache == .hit || cache == .miss || (cache == .none && unloadMs > 0) }
}

/// Where a generation's time went (milliseconds).
public struct GenerationTimings: Sendable, Equatable {
    public var textEncodeMs: Double = 0
    public var denoiseMs: Double = 0
    public var decodeMs: Double = 0

    public init(textEncodeMs: Double = 0, denoiseMs: Double = 0, decodeMs: Double = 0) {
        self.textEncodeMs = textEncodeMs
        self.denoiseMs = denoiseMs
        self.decodeMs = decodeMs
    }

    public var inferenceMs: Double { textEncodeMs + denoiseMs + decodeMs }
}

/// One base-model load: the weights, the first (warm-up) pass, and what the server preloaded.
public struct WarmupRecord: Sendable, Equatable {
    public var id: Int64?
    public var model: String
    public var startedAt: Date
    public var weightsLoadMs: Double
    public var firstPassMs: Double?
    /// "cold" or "warm" when known (were the weight files in the page cache?).
    public var pageCache: String?
    /// Adapters loaded into the cache before serving (nil: not a server start).
    public var preloaded: [String]?
    public var adapterLoadMs: Double?

    public init(id: Int64? = nil, model: String, startedAt: Date, weightsLoadMs: Double, firstPassMs: Double? = nil,
                pageCache: String? = nil, preloaded: [String]? = nil, adapterLoadMs: Double? = nil) {
        self.id = id
        self.model = model
        self.startedAt = startedAt
        self.weightsLoadMs = weightsLoadMs
        self.firstPassMs = firstPassMs
        self.pageCache = pageCache
        self.preloaded = preloaded
        self.adapterLoadMs = adapterLoadMs
    }
}

/// One image request and where its time went: filled in by whoever handles each phase (the
/// server's queue, the renderer's swap, generation and PNG encoding) and stored as it is. Phases a
/// request did not reach stay nil.
public struct RequestRecord: Sendable, Equatable {
    public var id: Int64?
    public var createdAt: Date
    public var warmupId: Int64?
    /// The server's request id, if any.
    public var requestId: String?
    /// HTTP status the server answered with, if any.
    public var status: Int?
    /// Which API the request came through: "images" (/v1/images), "a1111" (/sdapi/v1), "openai"
    /// (/v1/images/generations), "cli" (`hotswap render`); nil for rows written before it was recorded.
    public var api: String?
    /// The base model's family (SD1.x, SD2.x, SDXL); nil for rows written before it was recorded.
    public var family: String?
    /// Time spent waiting for the model before the swap began (server queue).
    public var queueMs: Double?
    /// The adapter set as `name:scale` joined by ", " ("" for none).
    public var adapters: String
    public var swap: SwapReport?
    public var generation: GenerationTimings?
    public var pngMs: Double?
    public var totalMs: Double?
    public var steps: Int?
    public var width: Int?
    public var height: Int?
    public var scheduler: String?
    public var seed: UInt64?
    /// "ok" or an error code.
    public var outcome: String
    /// The error message when outcome is not "ok".
    public var error: String?

    public init(id: Int64? = nil, createdAt: Date = Date(), warmupId: Int64? = nil, requestId: String? = nil,
                status: Int? = nil, queueMs: Double? = nil, adapters: String = "", swap: SwapReport? = nil,
                generation: GenerationTimings? = nil, pngMs: Double? = nil, totalMs: Double? = nil, steps: Int? = nil,
                width: Int? = nil, height: Int? = nil, scheduler: String? = nil, seed: UInt64? = nil,
                outcome: String = "ok", error: String? = nil) {
        self.id = id
        self.createdAt = createdAt
        self.warmupId = warmupId
        self.requestId = requestId
        self.status = status
        self.queueMs = queueMs
        self.adapters = adapters
        self.swap = swap
        self.generation = generation
        self.pngMs = pngMs
        self.totalMs = totalMs
        self.steps = steps
        self.width = width
        self.height = height
        self.scheduler = scheduler
        self.seed = seed
        self.outcome = outcome
        self.error = error
    }

    /// Marks the request failed (the phases it reached keep their times).
    public mutating func fail(_ code: String, _ message: String) {
        outcome = code
        error = message
    }
}

/// `GET /v1/timings` rows (docs/openapi.yaml, TimingRow): flat, every time in ms (0 when a phase
/// was not reached), the start as Unix seconds.
extension RequestRecord: Encodable {
    enum CodingKeys: String, CodingKey {
        case requestID = "request_id", startedAt = "started_at", api, family, adapters, status, outcome, cache
        case queueMs = "queue_ms", unloadMs = "unload_ms", loadMs = "load_ms", applyMs = "apply_ms", swapMs = "swap_ms"
        case textEncodeMs = "text_encode_ms", denoiseMs = "denoise_ms", decodeMs = "decode_ms"
        case inferenceMs = "inference_ms", totalMs = "total_ms", steps, width, height, seed, scheduler, error
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        let swap = self.swap ?? SwapReport(cache: .none)
        let generation = self.generation ?? GenerationTimings()
        try c.encode(requestId ?? "", forKey: .requestID)
        try c.encode(createdAt.timeIntervalSince1970, forKey: .startedAt)
        try c.encode(api ?? "", forKey: .api)
        try c.encode(family ?? "", forKey: .family)
        try c.encode(adapters, forKey: .adapters)
        try c.encode(status ?? 0, forKey: .status)
        try c.encode(outcome, forKey: .outcome)
        try c.encode(self.swap?.cache.rawValue ?? "", forKey: .cache)
        try c.encode(queueMs ?? 0, forKey: .queueMs)
        try c.encode(swap.unloadMs, forKey: .unloadMs)
        try c.encode(swap.loadMs, forKey: .loadMs)
        try c.encode(swap.applyMs, forKey: .applyMs)
        try c.encode(swap.totalMs, forKey: .swapMs)
        try c.encode(generation.textEncodeMs, forKey: .textEncodeMs)
        try c.encode(generation.denoiseMs, forKey: .denoiseMs)
        try c.encode(generation.decodeMs, forKey: .decodeMs)
        try c.encode(generation.inferenceMs, forKey: .inferenceMs)
        try c.encode(totalMs ?? 0, forKey: .totalMs)
        try c.encode(steps ?? 0, forKey: .steps)
        try c.encode(width ?? 0, forKey: .width)
        try c.encode(height ?? 0, forKey: .height)
        try c.encode(seed ?? 0, forKey: .seed)
        try c.encode(scheduler ?? "", forKey: .scheduler)
        try c.encodeIfPresent(error, forKey: .error)
    }
}
