// The real engine behind the server: a Renderer (base model + AdapterManager) loaded at warm-up.
import Foundation
import HotswapLoRA
import HotswapModels
import HotswapPipeline
import HotswapStore

public final class PipelineGenerator: ImageGenerating, @unchecked Sendable {
    public let modelDirectory: URL
    public let singleFile: SingleFileOptions
    /// A TAESD to decode with instead of the model's VAE (nil: the VAE).
    public let vaeDecoder: URL?
    public let adapterOptions: Renderer.AdapterOptions
    public let limits: RequestLimits
    /// Steps of the warm-up pass (at the model's default size, with guidance, as a real request).
    public let warmupSteps: Int

    private let lock = NSLock()
    private var renderer: Renderer?     // set once by warmUp, guarded by lock

    /// Adapters are only ever `<adaptersDirectory>/<name>.safetensors` (never a path).
    /// `modelDirectory`: a diffusers folder or a single-file checkpoint (read with `singleFile`).
    public init(modelDirectory: URL, singleFile: SingleFileOptions = .init(), vaeDecoder: URL? = nil, adaptersDirectory: URL,
                cacheLimitBytes: Int = 2 << 30, mode: LoRAMode = .fuse, limits: RequestLimits, warmupSteps: Int = 1) {
        self.modelDirectory = modelDirectory
        self.singleFile = singleFile
        self.vaeDecoder = vaeDecoder
        adapterOptions = Renderer.AdapterOptions(directory: adaptersDirectory, allowsPaths: false,
                                                 cacheLimitBytes: cacheLimitBytes, mode: mode)
        self.limits = limits
        self.warmupSteps = warmupSteps
    }

    var adaptersDirectory: URL { adapterOptions.directory! }

    public func warmUp(preload: [String]) throws -> WarmupRecord {
        let (renderer, record) = try Renderer.load(modelDirectory: modelDirectory, singleFile: singleFile, vaeDecoder: vaeDecoder,
                                                   adapters: adapterOptions, limits: limits,
                                                   preload: preload, warmupSteps: warmupSteps)
        lock.withLock { self.renderer = renderer }
        return record
    }

    private var loaded: Renderer? { lock.withLock { renderer } }

    private func loadedRenderer() throws -> Renderer {
        guard let renderer = loaded else { throw AdapterValidationError("the base model is not loaded yet; retry when /readyz answers 200") }
        return renderer
    }

    public func prepare(_ request: GenerationRequest) throws -> ResolvedRequest {
        try loadedRenderer().prepare(request)
    }

    public func render(_ request: ResolvedRequest, record: inout RequestRecord,
                       progress: @escaping (Int, Int) -> Bool) throws -> RenderedImage {
        try loadedRenderer().render(request, record: &record, progress: progress)
    }

    // MARK: Adapters

    public func listAdapters() throws -> [AdapterDescription] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: adaptersDirectory.path)) ?? []
        return files.filter { $0.hasSuffix(".safetensors") }
            .map { String($0.dropLast(".safetensors".count)) }
            .filter(AdapterName.isValid)
            .sorted()
            .compactMap { try? describeAdapter(named: $0) }
    }

    public func describeAdapter(named name: String) throws -> AdapterDescription? {
        guard let url = AdapterName.fileURL(for: name, in: adaptersDirectory), FileManager.default.fileExists(atPath: url.path) else {
            return nil
        }
        let info: AdapterInfo?
        if let renderer = loaded {
            info = try? renderer.adapters.inspect(url: url)
        } else {
            info = try? AdapterInfo(file: AdapterFile(url: url), name: name)
        }
        guard let info, info.alpha.isFinite else {
            // A file put there by hand that does not parse: listed, so it can be found and deleted.
            return AdapterDescription(name: name, format: "invalid", rank: nil, alpha: nil, targets: [], size: Self.size(of: url),
                                      type: "unknown", modes: [])
        }
        return Self.description(info, name: name, size: Self.size(of: url))
    }

    public func validateAdapter(at url: URL, name: String) throws -> AdapterDescription {
        let renderer = try loadedRenderer()
        do {
            var info = try renderer.adapters.validate(url: url)
            info.cached = false
            info.active = false
            return Self.description(info, name: name, size: Self.size(of: url))
        } catch let error as LoRAError {
            throw AdapterValidationError(error.description)
        } catch {
            throw AdapterValidationError("\(error)")
        }
    }

    public func adapterMetadata(named name: String) -> [String: String]? {
        guard let url = AdapterName.fileURL(for: name, in: adaptersDirectory) else { return nil }
        return try? AdapterFile(url: url).metadata
    }

    public func adapterChanged(named name: String) {
        loaded?.adapters.evict(name: name)
    }

    static func description(_ info: AdapterInfo, name: String, size: Int64) -> AdapterDescription {
        AdapterDescription(name: name, format: info.format.rawValue, rank: info.rank > 0 ? info.rank : nil,
                           alpha: info.rank > 0 ? Double(info.alpha) : nil,
                           targets: info.targets.keys.sorted(), size: size, cached: info.cached, active: info.active,
                           type: info.type, modes: info.runtimeCapable ? ["fuse", "runtime"] : ["fuse"])
    }

    static func size(of url: URL) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.int64Value ?? 0
    }
}
