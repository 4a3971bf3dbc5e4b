import Foundation
import HotswapCore

/// Memory for a fused weight: anonymous, 2 MB aligned and marked for transparent huge pages when
/// large (fewer TLB misses while the fuse kernel streams through hundreds of MB), else 64-byte aligned malloc.
final class FusedBuffer {
    let pointer: UnsafeMutablePointer<Float>
    private let mappedLength: Int

    init(count: Int) {
        let bytes = max(count, 1) * MemoryLayout<Float>.size
        #if os(Linux)
        if bytes >= 1 << 20, let mapped = FusedBuffer.mapHugePageAligned(bytes: bytes) {
            pointer = mapped.pointer.bindMemory(to: Float.self, capacity: count)
            mappedLength = mapped.length
            return
        }
        #endif
        // 64-byte aligned: the fuse kernel streams its stores only to vector-aligned rows.
        pointer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64).bindMemory(to: Float.self, capacity: max(count, 1))
        mappedLength = 0
    }

    deinit {
        if mappedLength > 0 { munmap(pointer, mappedLength) } else { UnsafeMutableRawPointer(pointer).deallocate() }
    }

    /// A tensor viewing this buffer (and keeping it alive).
    static func tensor(shape: [Int]) -> Tensor {
        let count = Tensor.elementCount(shape)
        let buffer = FusedBuffer(count: count)
        return Tensor(shape: shape, storage: TensorStorage(borrowing: buffer.pointer, count: count, owner: buffer))
    }

    #if os(Linux)
    private static func mapHugePageAligned(bytes: Int) -> (pointer: UnsafeMutableRawPointer, length: Int)? {
        let huge = 2 << 20
        let length = (bytes + huge - 1) & ~(huge - 1)
        guard let raw = mmap(nil, length + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              raw != MAP_FAILED else { return nil }
        let start = Int(bitPattern: raw)
        let aligned = (start + huge - 1) & ~(huge - 1)
        if aligned > start { munmap(raw, aligned - start) }
        let end = start + length + huge, used = aligned + length
        if end > used { munmap(UnsafeMutableRawPointer(bitPattern: used), end - used) }
        let pointer = UnsafeMutableRawPointer(bitPattern: aligned)!
        _ = madvise(pointer, length, MADV_HUGEPAGE)  // best effort: THP may be off
        return (pointer, length)
    }
    #endif
}
