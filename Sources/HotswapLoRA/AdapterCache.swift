/// Parsed adapters by file path, least recently used first out, bounded in bytes of weights.
/// A file whose size or modification time changed is dropped on lookup (and so read again).
public final class AdapterCache {
    public var limitBytes: Int { didSet { trim() } }
    private var entries: [String: LoRAAdapter] = [:]
    private var order: [String] = []   // least recently used first
    public private(set) var bytes = 0
    public private(set) var hits = 0
    public private(set) var misses = 0
    public private(set) var evictions = 0

    public init(limitBytes: Int) { self.limitBytes = limitBytes }

    public var paths: [String] { order }
    public var count: Int { entries.count }
    public func contains(_ path: String) -> Bool { entries[path] != nil }

    /// The cached adapter if its file still has `signature`; counts a hit or a miss.
    public func lookup(_ path: String, signature: FileSignature) -> LoRAAdapter? {
        if let adapter = entries[path] {
            if adapter.signature == signature {
                touch(path)
                hits += 1
                return adapter
            }
            remove(path)
        }
        misses += 1
        return nil
    }

    /// Adds (or replaces) an adapter and evicts the least recently used ones beyond the limit. An
    /// adapter larger than the whole limit is not kept.
    public func insert(_ adapter: LoRAAdapter, path: String) {
        remove(path)
        let size = adapter.byteSize
        guard size <= limitBytes else { return }
        entries[path] = adapter
        order.append(path)
        bytes += size
        trim()
    }

    public func remove(_ path: String) {
        guard let adapter = entries.removeValue(forKey: path) else { return }
        bytes -= adapter.byteSize
        order.removeAll { $0 == path }
    }

    public func removeAll() {
        entries.removeAll()
        order.removeAll()
        bytes = 0
    }

    private func touch(_ path: String) {
        if let i = order.firstIndex(of: path) { order.remove(at: i) }
        order.append(path)
    }

    private func trim() {
        while bytes > limitBytes, let oldest = order.first {
            remove(oldest)
            evictions += 1
        }
    }
}
