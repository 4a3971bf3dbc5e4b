import Foundation

/// Recycles activation buffers. A UNet forward allocates the same sequence of buffer sizes every
/// step; without a pool each large buffer is a fresh mmap from malloc, zeroed and page-faulted by
/// the kernel, and unmapped again when freed. With it, every step after the first is served from
/// buffers the previous step released, and `freshAllocations` stops growing.
public enum BufferPool {
    /// Buffers smaller than this (in floats) go straight to malloc.
    public static let minimumPooledFloats = 16 * 1024
    /// Upper bound on the bytes held idle in the pool.
    public static let capacityBytes = 2 << 30

    private static let lock = NSLock()
    nonisolated(unsafe) private static var idle: [Int: [UnsafeMutableRawPointer]] = [:]
    nonisolated(unsafe) private static var idleBytes = 0
    nonisolated(unsafe) private static var fresh = 0

    /// Allocations (of poolable size) that the pool could not serve, since the process started.
    public static var freshAllocations: Int {
        lock.lock(); defer { lock.unlock() }
        return fresh
    }

    static func allocate(floats: Int) -> UnsafeMutablePointer<Float> {
        let bytes = max(floats, 1) * MemoryLayout<Float>.stride
        if floats >= minimumPooledFloats {
            lock.lock()
            if var list = idle[floats], let pointer = list.popLast() {
                idle[floats] = list
                idleBytes -= bytes
                lock.unlock()
                return pointer.assumingMemoryBound(to: Float.self)
            }
            fresh += 1
            lock.unlock()
        }
        // 64-byte alignment: one AVX-512 vector, one cache line.
        return UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64).bindMemory(to: Float.self, capacity: max(floats, 1))
    }

    static func release(_ pointer: UnsafeMutablePointer<Float>, floats: Int) {
        let bytes = max(floats, 1) * MemoryLayout<Float>.stride
        if floats >= minimumPooledFloats {
            lock.lock()
            if idleBytes + bytes <= capacityBytes {
                idle[floats, default: []].append(UnsafeMutableRawPointer(pointer))
                idleBytes += bytes
                lock.unlock()
                return
            }
            lock.unlock()
        }
        UnsafeMutableRawPointer(pointer).deallocate()
    }

    /// Frees every idle buffer (e.g. after a large one-off VAE decode).
    public static func drain() {
        lock.lock()
        let all = idle.values.flatMap { $0 }
        idle = [:]
        idleBytes = 0
        lock.unlock()
        for pointer in all { pointer.deallocate() }
    }
}
