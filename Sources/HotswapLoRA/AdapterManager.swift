import Foundation
import HotswapCore
import HotswapModels
import HotswapStore

/// Owns the adapter cache and the active adapter set of one loaded model.
///
/// `activate` before each request: when the wanted set equals the active one nothing happens;
/// otherwise every layer the previous set changed points back at its untouched base weight, and
/// the new set is applied. In `.fuse` mode a changed layer's weight is base + sum(scale * B A)
/// computed into a buffer of its own (reused across swaps); the base is never written, so any
/// sequence of swaps leaves it bit-identical. The fused weights of sets that were active before
/// are kept while they fit `Tuning.fusedSetCacheBytes`: swapping back to such a set installs them
/// as they were, touching no weight memory. In `.runtime` mode the layers add scale * B (A x) at
/// every call instead. Every file is fully checked against the model before any layer changes: a
/// failed `activate` leaves the active set as it was. Thread-safe (one lock; swaps are serialized),
/// but a swap changes the model's layers: do not run `activate` while the same model is generating
/// (the server runs activate + generate for one request at a time per model).
public final class AdapterManager: @unchecked Sendable {
    public let model: StableDiffusionModel
    public let adaptersDirectory: URL?
    public let mode: LoRAMode
    public let alphaConvention: AlphaConvention
    public let targets: LoRATargets
    public let cache: AdapterCache

    /// Held for a whole swap (and every other change of the layers or the cache).
    private let lock = NSLock()
    /// Guards `published` only: listing adapters reads it without waiting for a running swap.
    private let publishedLock = NSLock()
    private var published = (active: Set<String>(), cached: Set<String>())
    /// Whether adapter names may be paths outside the adapters directory (the CLI: yes; the
    /// server: no, a name is always `<dir>/<name>.safetensors`).
    public let allowsPaths: Bool
    private struct ActiveAdapter {
        let spec: AdapterSpec
        let path: String
        let adapter: LoRAAdapter
    }
    private var activeAdapters: [ActiveAdapter] = []
    /// The active set's fused weights by layer, and the key of that set (`setKey`).
    private var activeBuffers: [ObjectIdentifier: Tensor] = [:]
    private var activeSetKey: String?
    /// Fused weights of sets active before, oldest first, within `Tuning.fusedSetCacheBytes`.
    private struct RetainedSet {
        let key: String
        let paths: Set<String>
        let weights: [ObjectIdentifier: Tensor]
        var bytes: Int { weights.values.reduce(0) { $0 + $1.count * 4 } }
    }
    private var retained: [RetainedSet] = []
    /// Spare fused-weight buffers by layer (from sets no longer kept), so a swap to a set with the
    /// same targets writes into memory that is already mapped.
    private var buffers: [ObjectIdentifier: Tensor] = [:]
    /// Layers changed by the active set.
    private var changed: [ObjectIdentifier: LoRATargetLayer] = [:]

    public init(model: StableDiffusionModel, adaptersDirectory: URL?, cacheLimitBytes: Int, mode: LoRAMode = .fuse,
                alphaConvention: AlphaConvention = .diffusers, allowsPaths: Bool = true) {
        self.model = model
        self.allowsPaths = allowsPaths
        self.alphaConvention = alphaConvention
        self.adaptersDirectory = adaptersDirectory
        self.mode = mode
        targets = LoRATargets(model: model)
        cache = AdapterCache(limitBytes: cacheLimitBytes)
    }

    /// The active set, in the order it was requested.
    public var active: [AdapterSpec] {
        lock.lock(); defer { lock.unlock() }
        return activeAdapters.map(\.spec)
    }

    /// (name, 12-digit A1111 hash) of the active adapters, for the infotext's `Lora hashes`.
    /// The hash is computed once per file (it reads the whole file) and kept with the adapter.
    public func loraHashes() -> [(name: String, hash: String)] {
        lock.lock(); defer { lock.unlock() }
        return activeAdapters.map { (AdapterManager.displayName($0.spec.name), LoRAHash.shortHash($0.adapter.hash)) }
    }

    // MARK: Resolving names

    /// DIR/NAME.safetensors (or DIR/NAME when it has the extension already), else NAME as a path.
    public func resolve(_ name: String) throws -> URL {
        let fm = FileManager.default
        if let dir = adaptersDirectory, !name.contains("/") {
            // The server names adapters only as `<name>.safetensors` (never a hidden upload's
            // `.upload-*.part`); the CLI also takes the file's own name.
            for candidate in allowsPaths ? [name + ".safetensors", name] : [name + ".safetensors"] {
                let url = dir.appendingPathComponent(candidate)
                var isDirectory: ObjCBool = false
                if fm.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue { return url }
            }
        }
        var isDirectory: ObjCBool = false
        if allowsPaths, name.contains("/") || name.hasSuffix(".safetensors"),
           fm.fileExists(atPath: name, isDirectory: &isDirectory), !isDirectory.boolValue {
            return URL(fileURLWithPath: name)
        }
        throw LoRAError.unknownAdapter(name: name, directory: adaptersDirectory?.path,
                                       available: (try? adapterFiles().map { AdapterManager.displayName($0.path) }) ?? [])
    }

    static func canonicalPath(_ url: URL) -> String { url.standardizedFileURL.resolvingSymlinksInPath().path }

    public static func displayName(_ nameOrPath: String) -> String {
        var name = (nameOrPath as NSString).lastPathComponent
        if name.hasSuffix(".safetensors") { name.removeLast(".safetensors".count) }
        return name
    }

    func adapterFiles() throws -> [URL] {
        guard let dir = adaptersDirectory else { return [] }
        return try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "safetensors" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    // MARK: Swapping

    /// Makes `specs` the active set (see the type's documentation). Throws `LoRAError` for an
    /// unknown name, an unreadable file, keys that fit no layer, shapes that do not fit or a
    /// scale that is not finite; the active set is then unchanged.
    @discardableResult
    public func activate(_ specs: [AdapterSpec]) throws -> SwapReport {
        lock.lock(); defer { lock.unlock() }
        defer { publish() }
        let start = Stopwatch()
        for spec in specs where !spec.scale.isFinite {
            throw LoRAError.invalidScale(name: spec.name, scale: spec.scale)
        }
        // Resolve and stat (no file is read here).
        var wanted: [(spec: AdapterSpec, url: URL, path: String, signature: FileSignature)] = []
        for spec in specs {
            let url = try resolve(spec.name)
            let path = AdapterManager.canonicalPath(url)
            wanted.append((spec, url, path, try FileSignature(url: url)))
        }
        // Same set (as a set: application order is canonical), same files: nothing to do.
        let key = { (path: String, scale: Float) in "\(path)\u{0}\(scale.bitPattern)" }
        let wantedKeys = wanted.map { key($0.path, $0.spec.scale) }.sorted()
        let activeKeys = activeAdapters.map { key($0.path, $0.spec.scale) }.sorted()
        if wantedKeys == activeKeys,
           zip(wanted.sorted { key($0.path, $0.spec.scale) < key($1.path, $1.spec.scale) },
               activeAdapters.sorted { key($0.path, $0.spec.scale) < key($1.path, $1.spec.scale) })
            .allSatisfy({ $0.signature == $1.adapter.signature }) {
            var report = SwapReport(cache: specs.isEmpty ? .none : .reuse)
            report.outcomes = specs.map { _ in .reuse }
            report.layers = changed.count
            report.totalMs = start.elapsedMs
            var previous = activeAdapters
            activeAdapters = wanted.map { item in
                let i = previous.firstIndex { $0.path == item.path && $0.spec.scale == item.spec.scale }!
                return ActiveAdapter(spec: item.spec, path: item.path, adapter: previous.remove(at: i).adapter)
            }
            return report
        }

        // Load: from the cache, or read, match and check the file. Throws before any layer changes.
        var report = SwapReport(cache: specs.isEmpty ? .none : .hit)
        var loadMs = 0.0
        var loaded: [ActiveAdapter] = []
        var fresh: [String: LoRAAdapter] = [:]
        for item in wanted {
            if let adapter = fresh[item.path] ?? cache.lookup(item.path, signature: item.signature) {
                loaded.append(ActiveAdapter(spec: item.spec, path: item.path, adapter: adapter))
                report.outcomes.append(fresh[item.path] != nil ? .miss : .hit)
                continue
            }
            let loadStart = Stopwatch()
            let adapter = try LoRAAdapter.load(url: item.url, targets: targets, alphaConvention: alphaConvention)
            loadMs += loadStart.elapsedMs
            fresh[item.path] = adapter
            loaded.append(ActiveAdapter(spec: item.spec, path: item.path, adapter: adapter))
            report.outcomes.append(.miss)
            report.cache = .miss
        }
        for (path, adapter) in fresh { cache.insert(adapter, path: path) }
        report.loadMs = loadMs

        // Canonical application order, so that a set gives the same bits whatever order it was asked in.
        let ordered = loaded.sorted { key($0.path, $0.spec.scale) < key($1.path, $1.spec.scale) }
        // What its fused weights depend on: files (as they are on disk now) and scales, in that order.
        let setKey = ordered.map { "\(key($0.path, $0.spec.scale))\u{0}\($0.adapter.signature)" }.joined(separator: "\u{1}")
        let reuse = mode == .fuse ? retained.firstIndex { $0.key == setKey }.map { retained.remove(at: $0) } : nil
        var contributions: [ObjectIdentifier: (layer: LoRATargetLayer, terms: [(LoRALayerUpdate, Float)])] = [:]
        var layerOrder: [ObjectIdentifier] = []
        for item in ordered {
            for update in item.adapter.updates {
                let id = update.layer.identity
                if contributions[id] == nil {
                    contributions[id] = (update.layer, [])
                    layerOrder.append(id)
                }
                contributions[id]!.terms.append((update, item.spec.scale))
            }
        }

        // Unload: every layer of the previous set back to its base weight.
        let unloadStart = Stopwatch()
        for layer in changed.values { layer.restore() }
        changed.removeAll(keepingCapacity: true)
        if let previous = activeSetKey, !activeBuffers.isEmpty {
            retain(RetainedSet(key: previous, paths: Set(activeAdapters.map(\.path)), weights: activeBuffers))
        }
        (activeBuffers, activeSetKey) = ([:], nil)
        if !contributions.isEmpty {
            // Keep spares only for layers the new set uses (an empty set keeps them for the next swap).
            for id in buffers.keys where contributions[id] == nil { buffers.removeValue(forKey: id) }
        }
        if mode == .runtime { buffers.removeAll() }
        report.unloadMs = unloadStart.elapsedMs

        // Apply.
        let applyStart = Stopwatch()
        if mode == .runtime, let fused = ordered.first(where: { !$0.adapter.runtimeCapable }) {
            // Nothing changed yet: the layers are at their base weights, the previous set unloaded.
            activeAdapters = []
            throw LoRAError.fuseOnly(file: fused.adapter.url.path, kind: fused.adapter.kindDescription)
        }
        switch mode {
        case .fuse:
            activeSetKey = setKey
            if let reuse, reuse.weights.keys.allSatisfy({ contributions[$0] != nil }) {
                for (id, buffer) in reuse.weights {
                    let layer = contributions[id]!.layer
                    layer.setWeight(buffer)
                    changed[id] = layer
                }
                activeBuffers = reuse.weights
                report.reusedFusedWeights = true
                break
            }
            var jobs: [FuseKernel.Job] = []
            var installs: [(LoRATargetLayer, Tensor)] = []
            for id in layerOrder {
                let (layer, terms) = contributions[id]!
                let weightTerms = terms.compactMap { update, scale -> FuseKernel.Term? in
                    if let dense = update.dense { return FuseKernel.Term(dense: dense.data, scale: scale) }
                    if let down = update.down, let up = update.up {
                        return FuseKernel.Term(down: down.data, up: up.data, rank: update.rank, scale: scale * update.scale)
                    }
                    return nil
                }
                guard !weightTerms.isEmpty else { continue }
                let base = layer.baseWeight
                let buffer: Tensor
                if let spare = buffers.removeValue(forKey: id), spare.shape == base.shape {
                    buffer = spare
                } else {
                    buffer = FusedBuffer.tensor(shape: base.shape)
                }
                activeBuffers[id] = buffer
                let columns = base.count / base.shape[0]
                jobs.append(FuseKernel.Job(base: base.data, out: buffer.data, rows: base.shape[0], columns: columns,
                                           terms: weightTerms))
                installs.append((layer, buffer))
            }
            withExtendedLifetime(ordered) { FuseKernel.run(jobs) }
            let releaseBase = Tuning.current.releaseFusedBasePages
            for (layer, buffer) in installs {
                layer.setWeight(buffer)
                changed[layer.identity] = layer
                // HOTSWAP_RELEASE_FUSED_BASE=1: forward reads only the fused copy now, so a base weight
                // borrowed from a memory-mapped F32 file may leave resident memory (it reads back from
                // the page cache at the next fuse or unload): resident once, not twice (SDXL: ~5 GB).
                if releaseBase { layer.baseWeight.storage.releaseResidentPages() }
            }
        case .runtime:
            for id in layerOrder {
                let (layer, terms) = contributions[id]!
                let lowRank = terms.filter { $0.0.down != nil }
                guard !lowRank.isEmpty else { continue }
                switch layer {
                case .linear(let linear):
                    linear.runtimeAdapters = lowRank.map { LowRankDelta(down: $0.0.down!, up: $0.0.up!, scale: $0.1 * $0.0.scale) }
                case .conv(let conv):
                    conv.runtimeAdapters = lowRank.map { ConvLowRankDelta(down: $0.0.down!, up: $0.0.up!, scale: $0.1 * $0.0.scale) }
                }
                changed[id] = layer
            }
        }
        // Biases (both modes): base + sum of s * bias update, a vector per layer.
        for id in layerOrder {
            let (layer, terms) = contributions[id]!
            let biasTerms = terms.filter { $0.0.bias != nil }
            guard !biasTerms.isEmpty else { continue }
            let out = layer.weightShape[0]
            let bias = layer.baseBias?.copy() ?? Tensor(zeros: [out])
            for (update, scale) in biasTerms {
                let delta = update.bias!
                for i in 0..<out { bias.data[i] += scale * delta.data[i] }
            }
            layer.setBias(bias)
            changed[id] = layer
        }
        report.applyMs = applyStart.elapsedMs
        activeAdapters = loaded
        report.layers = changed.count
        report.totalMs = start.elapsedMs
        return report
    }

    /// Forgets a file's parsed copy and the fused weights kept from it (deleted or replaced on
    /// disk). The active set keeps working (its weights are applied already); the next swap that
    /// wants the file reads it again.
    public func evict(name: String) {
        lock.lock(); defer { lock.unlock() }
        defer { publish() }
        // By path (the file may be gone already, so no resolving), else by name in the adapters directory.
        let asPath = AdapterManager.canonicalPath(URL(fileURLWithPath: name))
        let directory = adaptersDirectory.map { AdapterManager.canonicalPath($0) }
        func named(_ path: String) -> Bool {
            let parent = (path as NSString).deletingLastPathComponent
            return path == asPath || (!name.contains("/") && parent == directory
                                      && AdapterManager.displayName(path) == AdapterManager.displayName(name))
        }
        for path in cache.paths where named(path) { cache.remove(path) }
        retained.removeAll { $0.paths.contains(where: named) }
    }

    /// Keeps `set`'s fused weights for a later swap back, dropping the oldest kept sets beyond
    /// `Tuning.fusedSetCacheBytes`; what is dropped becomes spare buffers for the next fuse.
    private func retain(_ set: RetainedSet) {
        retained.append(set)
        var bytes = retained.reduce(0) { $0 + $1.bytes }
        while bytes > Tuning.current.fusedSetCacheBytes, !retained.isEmpty {
            let dropped = retained.removeFirst()
            bytes -= dropped.bytes
            buffers.merge(dropped.weights) { kept, _ in kept }
        }
    }

    /// Bytes of fused-weight buffers held: the active set's, the kept sets', the spares.
    public var fusedBufferBytes: Int {
        lock.lock(); defer { lock.unlock() }
        return [activeBuffers, buffers].reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count * 4 } }
            + retained.reduce(0) { $0 + $1.bytes }
    }

    /// Frees the fused buffers no layer uses now: the sets kept for a swap back and the spares
    /// (kept after `activate([])` so that the next swap writes into memory already mapped).
    public func releaseUnusedBuffers() {
        lock.lock(); defer { lock.unlock() }
        retained.removeAll()
        buffers.removeAll()
    }

    /// Benchmark helper: milliseconds to copy the base weights of the layers the active set changes
    /// into scratch buffers with the fuse kernel's banding and threads but no low-rank terms, i.e.
    /// the memory-traffic floor of a fused swap (median of `rounds`, after one warm-up).
    public func measureCopyFloor(rounds: Int = 5) -> Double {
        lock.lock(); defer { lock.unlock() }
        let layers = Array(changed.values)
        let scratch = layers.map { FusedBuffer.tensor(shape: $0.baseWeight.shape) }
        let jobs = zip(layers, scratch).map { layer, out in
            FuseKernel.Job(base: layer.baseWeight.data, out: out.data, rows: out.shape[0],
                           columns: out.count / out.shape[0], terms: [])
        }
        var times: [Double] = []
        for round in 0...rounds {
            let start = Stopwatch()
            withExtendedLifetime(scratch) { FuseKernel.run(jobs) }
            if round > 0 { times.append(start.elapsedMs) }
        }
        times.sort()
        return times[times.count / 2]
    }

    // MARK: Listing and checking

    /// Every `.safetensors` in the adapters directory, each checked against this model (a file
    /// that does not fit is listed with `fitsModel == false` and the reason).
    public func list() throws -> [AdapterInfo] {
        try adapterFiles().map { url in
            do { return try validate(url: url) } catch {
                var info = (try? inspect(url: url)) ?? AdapterInfo.failed(url: url, problem: "\(error)")
                info.fitsModel = false
                info.problem = "\(error)"
                return info
            }
        }
    }

    /// A file's format, ranks, alphas and targets (header only; no model check).
    public func inspect(url: URL) throws -> AdapterInfo {
        var info = AdapterInfo(file: try AdapterFile(url: url), name: AdapterManager.displayName(url.path))
        markState(&info, url: url)
        return info
    }

    /// `inspect` plus the full key and shape check against this model, without reading tensors or
    /// changing anything (for uploads). Throws the `LoRAError` that `activate` would.
    public func validate(url: URL) throws -> AdapterInfo {
        let file = try AdapterFile(url: url)
        _ = try LoRAAdapter.match(file, targets: targets)
        try file.checkValues()
        var info = AdapterInfo(file: file, name: AdapterManager.displayName(url.path))
        // A server in runtime mode could never apply it: refuse it now, not at every request.
        if mode == .runtime && !info.runtimeCapable { throw LoRAError.fuseOnly(file: url.path, kind: info.type) }
        info.fitsModel = true
        markState(&info, url: url)
        return info
    }

    /// Cached/active flags from the published state (callers hold no lock; a running swap is not waited for).
    private func markState(_ info: inout AdapterInfo, url: URL) {
        let path = AdapterManager.canonicalPath(url)
        let state = publishedLock.withLock { published }
        info.cached = state.cached.contains(path)
        info.active = state.active.contains(path)
    }

    /// Publishes the active set and the cache's contents for `markState` (callers hold `lock`).
    private func publish() {
        let state = (active: Set(activeAdapters.map(\.path)), cached: Set(cache.paths))
        publishedLock.withLock { published = state }
    }
}
