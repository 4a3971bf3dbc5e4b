// The seam between the HTTP service and the engine: the server only talks to an `ImageGenerating`,
// so router tests run against a fast fake and the live test against the real renderer.
import Foundation
import HotswapPipeline
import HotswapStore

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
    /// lora, locon, loha, lokr, dora, diff or mixed.
    public var type: String
    /// "fuse" and, when the math allows it, "runtime" (LoHa, LoKr, DoRA and full diffs fuse only).
    public var modes: [String]

    public init(name: String, format: String, rank: Int?, alpha: Double?, targets: [String], size: Int64,
                cached: Bool = false, active: Bool = false, type: String = "lora", modes: [String] = ["fuse", "runtime"]) {
        self.type = type
        self.modes = modes
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
/// Threading contract: `warmUp` and `render` are only ever called from the server's single
/// worker thread, one at a time. `prepare`, the adapter queries and `validateAdapter` may be
/// called from any thread, concurrently with a running job: implementations guard their own state.
public protocol ImageGenerating: AnyObject, Sendable {
    /// Loads the base model, preloads the named adapters into the cache and runs one warm-up pass.
    func warmUp(preload: [String]) throws -> WarmupRecord

    /// Every check of a request (the one validator: `Renderer.prepare`); throws `GenerationError`
    /// naming the field, or `LoRAError.unknownAdapter` for an adapter that does not exist.
    func prepare(_ request: GenerationRequest) throws -> ResolvedRequest

    /// Swaps adapters, generates, encodes the PNG (`Renderer.render`), filling `record`.
    /// `progress(step, total)` is called after each denoising step (it drives /v1/jobs and
    /// /sdapi/v1/progress); returning false cancels with `GenerationError.cancelled`.
    func render(_ request: ResolvedRequest, record: inout RequestRecord,
                progress: @escaping (Int, Int) -> Bool) throws -> RenderedImage

    /// Every adapter file in the adapters directory.
    func listAdapters() throws -> [AdapterDescription]

    /// One adapter, or nil when no file has that name.
    func describeAdapter(named name: String) throws -> AdapterDescription?

    /// Parses the file and checks its keys against the base model; throws
    /// `AdapterValidationError` for a file that cannot be used.
    func validateAdapter(at url: URL, name: String) throws -> AdapterDescription

    /// The adapter file's safetensors `__metadata__` (kohya's ss_* training notes, PEFT's config),
    /// empty when there is none; nil when no usable file has that name. For GET /sdapi/v1/loras.
    func adapterMetadata(named name: String) -> [String: String]?

    /// The file behind `name` was replaced or removed: drop it from the cache (and from the
    /// active set at the next swap).
    func adapterChanged(named name: String)
}
