// The seam between the HTTP service and the engine: the server only talks to an `ImageGenerating`,
// so router tests run against a fast fake and the live test against the real pipeline.
import Foundation
import HotswapPipeline

/// One adapter to apply, with its strength.
public struct AdapterRef: Sendable, Equatable, Codable {
    public var name: String
    public var scale: Float

    public init(name: String, scale: Float = 1) {
        self.name = name
        self.scale = scale
    }
}

/// A validated txt2img job: the engine request plus the adapters to activate first.
public struct ImageJob: Sendable {
    public var request: GenerationRequest
    public var adapters: [AdapterRef]
    /// Filled in by `ImageGenerating.resolve`.
    public var width: Int
    public var height: Int
    public var scheduler: SchedulerName

    public init(request: GenerationRequest, adapters: [AdapterRef], width: Int, height: Int, scheduler: SchedulerName) {
        self.request = request
        self.adapters = adapters
        self.width = width
        self.height = height
        self.scheduler = scheduler
    }
}

/// What activating the job's adapters cost; `cache` is what the X-Adapter-Cache header says.
public struct SwapSummary: Sendable, Equatable {
    public enum Cache: String, Sendable, Codable {
        /// No adapter requested and none was active.
        case none
        /// The requested set was already active: nothing to do.
        case reuse
        /// Every adapter came from the in-memory cache.
        case hit
        /// At least one adapter was read from disk.
        case miss
    }

    public var cache: Cache
    public var unloadMs: Double
    public var loadMs: Double
    public var applyMs: Double
    public var totalMs: Double

    public init(cache: Cache, unloadMs: Double = 0, loadMs: Double = 0, applyMs: Double = 0, totalMs: Double = 0) {
        self.cache = cache
        self.unloadMs = unloadMs
        self.loadMs = loadMs
        self.applyMs = applyMs
        self.totalMs = totalMs
    }

    public static let nothing = SwapSummary(cache: .none)
}

/// Where a job's inference time went (milliseconds).
public struct ImageTimings: Sendable, Equatable {
    public var textEncodeMs: Double
    public var denoiseMs: Double
    public var decodeMs: Double

    public init(textEncodeMs: Double = 0, denoiseMs: Double = 0, decodeMs: Double = 0) {
        self.textEncodeMs = textEncodeMs
        self.denoiseMs = denoiseMs
        self.decodeMs = decodeMs
    }
}

/// The result of one job on the worker thread.
public struct GenerationOutcome: Sendable {
    public var width: Int
    public var height: Int
    public var rgb: [UInt8]
    public var seed: UInt64
    public var scheduler: SchedulerName
    public var timings: ImageTimings
    public var swap: SwapSummary
    /// The active adapters' A1111 short hashes, for the infotext.
    public var loraHashes: [LoraHash]

    public init(width: Int, height: Int, rgb: [UInt8], seed: UInt64, scheduler: SchedulerName,
                timings: ImageTimings, swap: SwapSummary, loraHashes: [LoraHash] = []) {
        self.loraHashes = loraHashes
        self.width = width
        self.height = height
        self.rgb = rgb
        self.seed = seed
        self.scheduler = scheduler
        self.timings = timings
        self.swap = swap
    }

    public var inferenceMs: Double { timings.textEncodeMs + timings.denoiseMs + timings.decodeMs }
}

/// An adapter name and its A1111 short hash (first 12 hex digits of the file's SHA-256).
public struct LoraHash: Sendable, Equatable {
    public var name: String
    public var hash: String
    public init(name: String, hash: String) {
        self.name = name
        self.hash = hash
    }
}

/// What start-up cost: the warm-up row of the timing database.
public struct WarmupReport: Sendable, Equatable {
    public var modelName: String
    public var baseLoadMs: Double
    /// Whether the base's weight files looked resident in the page cache before loading
    /// (a second start right after the first is "warm").
    public var pageCache: String
    public var preloaded: [String]
    public var adapterLoadMs: Double
    public var warmupMs: Double

    public init(modelName: String, baseLoadMs: Double, pageCache: String = "unknown", preloaded: [String] = [],
                adapterLoadMs: Double = 0, warmupMs: Double = 0) {
        self.modelName = modelName
        self.baseLoadMs = baseLoadMs
        self.pageCache = pageCache
        self.preloaded = preloaded
        self.adapterLoadMs = adapterLoadMs
        self.warmupMs = warmupMs
    }
}

/// One adapter as `GET /v1/adapters` shows it.
public struct AdapterDescription: Sendable, Equatable, Codable {
    public var name: String
    public var format: String
    public var rank: Int?
    public var alpha: Double?
    public var targets: [String]
    public var size: Int64
    public var cached: Bool
    public var active: Bool

    public init(name: String, format: String, rank: Int?, alpha: Double?, targets: [String], size: Int64,
                cached: Bool = false, active: Bool = false) {
        self.name = name
        self.format = format
        self.rank = rank
        self.alpha = alpha
        self.targets = targets
        self.size = size
        self.cached = cached
        self.active = active
    }
}

/// Why an uploaded adapter file is refused (answered 422 with this message).
public struct AdapterValidationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The engine as the server sees it.
///
/// Threading contract: `warmUp` and `generate` are only ever called from the server's single
/// worker thread, one at a time. `resolve`, the adapter queries and `validateAdapter` may be called
/// from any thread, concurrently with a running job: implementations guard their own state.
public protocol ImageGenerating: AnyObject, Sendable {
    /// Loads the base model, preloads the named adapters into the cache and runs one warm-up pass.
    func warmUp(preload: [String]) throws -> WarmupReport

    /// The loaded model's name (for the PNG infotext); valid after `warmUp`.
    var modelName: String { get }

    /// Fills in defaults (size, scheduler) and checks the fields the model decides on
    /// (clip_skip range, a model whose own scheduler is unknown); throws `GenerationError`.
    func resolve(_ request: GenerationRequest) throws -> (width: Int, height: Int, scheduler: SchedulerName)

    /// Activates `job.adapters` (unloading the previous set), then generates.
    /// `shouldContinue` is polled between denoising steps; returning false cancels with
    /// `GenerationError.cancelled`.
    func generate(_ job: ImageJob, shouldContinue: @escaping () -> Bool) throws -> GenerationOutcome

    /// Every adapter file in the adapters directory.
    func listAdapters() throws -> [AdapterDescription]

    /// One adapter, or nil when no file has that name.
    func describeAdapter(named name: String) throws -> AdapterDescription?

    /// Parses the file and checks its keys against the base model; throws
    /// `AdapterValidationError` for a file that cannot be used.
    func validateAdapter(at url: URL, name: String) throws -> AdapterDescription

    /// The file behind `name` was replaced or removed: drop it from the cache (and from the
    /// active set at the next swap).
    func adapterChanged(named name: String)
}
