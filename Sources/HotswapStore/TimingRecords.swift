import Foundation

/// One model load: how long the weights took and the first (warm-up) forward pass.
public struct WarmupRecord: Sendable, Equatable {
    public var id: Int64?
    public var model: String
    public var startedAt: Date
    public var weightsLoadMs: Double
    public var firstPassMs: Double?
    /// "cold" or "warm" when known (were the weight files in the page cache?).
    public var pageCache: String?

    public init(id: Int64? = nil, model: String, startedAt: Date, weightsLoadMs: Double, firstPassMs: Double? = nil,
                pageCache: String? = nil) {
        self.id = id
        self.model = model
        self.startedAt = startedAt
        self.weightsLoadMs = weightsLoadMs
        self.firstPassMs = firstPassMs
        self.pageCache = pageCache
    }
}

/// One generation request and where its time went. Fields a request did not reach stay nil.
public struct RequestRecord: Sendable, Equatable {
    public var id: Int64?
    public var createdAt: Date
    public var warmupId: Int64?
    /// The server's request id, if any.
    public var requestId: String?
    /// HTTP status the server answered with, if any.
    public var status: Int?
    /// Time spent waiting for the model before the swap began (server queue).
    public var queueMs: Double?
    /// The adapter set as `name:scale` joined by ", " ("" for none).
    public var adapters: String
    /// none / reuse / hit / miss
    public var cache: String?
    public var swapUnloadMs: Double?
    public var swapLoadMs: Double?
    public var swapApplyMs: Double?
    public var swapMs: Double?
    public var textEncodeMs: Double?
    public var denoiseMs: Double?
    public var decodeMs: Double?
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
                status: Int? = nil, queueMs: Double? = nil, adapters: String = "",
                cache: String? = nil, swapUnloadMs: Double? = nil, swapLoadMs: Double? = nil, swapApplyMs: Double? = nil,
                swapMs: Double? = nil, textEncodeMs: Double? = nil, denoiseMs: Double? = nil, decodeMs: Double? = nil,
                pngMs: Double? = nil, totalMs: Double? = nil, steps: Int? = nil, width: Int? = nil, height: Int? = nil,
                scheduler: String? = nil, seed: UInt64? = nil, outcome: String = "ok", error: String? = nil) {
        self.id = id
        self.createdAt = createdAt
        self.warmupId = warmupId
        self.requestId = requestId
        self.status = status
        self.queueMs = queueMs
        self.adapters = adapters
        self.cache = cache
        self.swapUnloadMs = swapUnloadMs
        self.swapLoadMs = swapLoadMs
        self.swapApplyMs = swapApplyMs
        self.swapMs = swapMs
        self.textEncodeMs = textEncodeMs
        self.denoiseMs = denoiseMs
        self.decodeMs = decodeMs
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
}
