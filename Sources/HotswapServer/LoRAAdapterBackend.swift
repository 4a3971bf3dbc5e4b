// The adapter backend over HotswapLoRA's AdapterManager: the cache, fuse/restore swaps, and the
// key/shape check of uploads against the loaded base.
import Foundation
import HotswapLoRA
import HotswapModels
import HotswapPipeline

/// The adapter backend `hotswap serve` uses.
public func makeAdapterBackend(adaptersDirectory: URL, cacheLimitBytes: Int = 2 << 30,
                               mode: LoRAMode = .fuse) -> any AdapterBackend {
    LoRAAdapterBackend(directory: adaptersDirectory, cacheLimitBytes: cacheLimitBytes, mode: mode)
}

public final class LoRAAdapterBackend: AdapterBackend, @unchecked Sendable {
    public let directory: URL
    public let cacheLimitBytes: Int
    public let mode: LoRAMode
    private let lock = NSLock()
    private var manager: AdapterManager?      // set once by attach (worker thread), guarded by lock

    public init(directory: URL, cacheLimitBytes: Int = 2 << 30, mode: LoRAMode = .fuse) {
        self.directory = directory
        self.cacheLimitBytes = cacheLimitBytes
        self.mode = mode
    }

    private var loaded: AdapterManager? { lock.withLock { manager } }

    public func attach(model: StableDiffusionModel) throws {
        let manager = AdapterManager(model: model, adaptersDirectory: directory, cacheLimitBytes: cacheLimitBytes, mode: mode)
        lock.withLock { self.manager = manager }
    }

    /// Loads each adapter into the cache (activating it, then going back to the base model).
    public func preload(_ names: [String]) throws -> Double {
        guard let manager = loaded, !names.isEmpty else { return 0 }
        var loadMs = 0.0
        for name in names {
            guard AdapterName.fileURL(for: name, in: directory).map({ FileManager.default.fileExists(atPath: $0.path) }) == true else {
                throw AdapterMissingError(name: name)
            }
            do {
                loadMs += try manager.activate([AdapterSpec(name: AdapterName.fileURL(for: name, in: directory)!.path, scale: 1)]).loadMs
            } catch let error as LoRAError {
                throw AdapterValidationError("--preload \(name): \(error)")
            }
        }
        try manager.activate([])
        return loadMs
    }

    public func activate(_ adapters: [AdapterRef]) throws -> SwapSummary {
        guard let manager = loaded else { throw AdapterValidationError("the base model is not loaded yet") }
        // Full paths inside the adapters directory, so the manager never looks anywhere else
        // (it would take a bare "x.safetensors" relative to the working directory).
        var specs: [AdapterSpec] = []
        for adapter in adapters {
            guard let url = AdapterName.fileURL(for: adapter.name, in: directory) else { throw AdapterMissingError(name: adapter.name) }
            specs.append(AdapterSpec(name: url.path, scale: adapter.scale))
        }
        let report: SwapReport
        do {
            report = try manager.activate(specs)
        } catch let error as LoRAError {
            if case .unknownAdapter(let path, _, _) = error {
                throw AdapterMissingError(name: adapters.first { AdapterName.fileURL(for: $0.name, in: directory)?.path == path }?.name
                                          ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)
            }
            throw AdapterValidationError(error.description.replacingOccurrences(of: directory.standardizedFileURL.path + "/", with: ""))
        }
        let cache: SwapSummary.Cache
        switch report.cache {
        case .none: cache = .none
        case .reuse: cache = .reuse
        case .hit: cache = .hit
        case .miss: cache = .miss
        }
        return SwapSummary(cache: cache, unloadMs: report.unloadMs, loadMs: report.loadMs, applyMs: report.applyMs,
                           totalMs: report.totalMs)
    }

    public func list() throws -> [AdapterDescription] {
        AdapterDirectory.names(in: directory).compactMap { try? describe(named: $0) }
    }

    public func describe(named name: String) throws -> AdapterDescription? {
        guard let url = AdapterName.fileURL(for: name, in: directory), FileManager.default.fileExists(atPath: url.path) else {
            return nil
        }
        let info: AdapterInfo?
        if let manager = loaded {
            info = try? manager.inspect(url: url)
        } else {
            info = try? AdapterInfo(file: AdapterFile(url: url), name: name)
        }
        guard let info else {
            // A file put there by hand that does not parse: listed, so it can be found and deleted.
            return AdapterDescription(name: name, format: "invalid", rank: nil, alpha: nil, targets: [],
                                      size: AdapterDirectory.size(of: url))
        }
        return Self.description(info, name: name, size: AdapterDirectory.size(of: url))
    }

    public func validate(at url: URL, name: String) throws -> AdapterDescription {
        guard let manager = loaded else { throw AdapterValidationError("the base model is not loaded yet; retry when /readyz answers 200") }
        do {
            var info = try manager.validate(url: url)
            info.cached = false
            info.active = false
            return Self.description(info, name: name, size: AdapterDirectory.size(of: url))
        } catch let error as LoRAError {
            throw AdapterValidationError(error.description)
        } catch {
            throw AdapterValidationError("\(error)")
        }
    }

    public func loraHashes() -> [LoraHash] {
        (loaded?.loraHashes() ?? []).map { LoraHash(name: $0.name, hash: $0.hash) }
    }

    public func changed(named name: String) {
        loaded?.evict(name: name)
    }

    static func description(_ info: AdapterInfo, name: String, size: Int64) -> AdapterDescription {
        AdapterDescription(name: name, format: info.format.rawValue, rank: info.rank > 0 ? info.rank : nil,
                           alpha: info.rank > 0 ? Double(info.alpha) : nil,
                           targets: info.targets.keys.sorted(), size: size, cached: info.cached, active: info.active)
    }
}

