/// Where a swap's adapters came from.
public enum CacheOutcome: String, Sendable, Codable {
    /// No adapters wanted and none active.
    case none
    /// The wanted set was already active: nothing done.
    case reuse
    /// Every adapter came from the cache (no file read).
    case hit
    /// At least one adapter was read from its file.
    case miss
}

/// What one `activate` did and how long each part took (milliseconds).
public struct SwapReport: Sendable, Equatable {
    public var cache: CacheOutcome
    /// Restoring the layers of the previous set to their base weights (and freeing buffers).
    public var unloadMs: Double = 0
    /// Reading and parsing files (cache misses only).
    public var loadMs: Double = 0
    /// Computing and installing the new weights.
    public var applyMs: Double = 0
    public var totalMs: Double = 0
    /// Per adapter, in request order: hit or miss (reuse/none when nothing was looked up).
    public var outcomes: [CacheOutcome] = []
    /// Layers now changed by adapters.
    public var layers: Int = 0

    public init(cache: CacheOutcome) { self.cache = cache }
}
