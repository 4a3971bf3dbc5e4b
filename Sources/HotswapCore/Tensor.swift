import Foundation
// A dense Float32 tensor in row-major (NCHW for images) layout.
//
// Storage is a reference type so that weights can borrow memory-mapped file regions without a
// copy, and activations can be handed between layers without copy-on-write surprises. A Tensor
// value is cheap to pass around; kernels write into freshly made outputs or into buffers they own.

/// Float32 memory that a Tensor views: either allocated here, or borrowed from an owner (an mmap).
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    /// Keeps borrowed memory alive; nil when the storage allocated its own memory.
    private let owner: AnyObject?

    /// Allocates `count` floats (from the BufferPool), zero-filled.
    public convenience init(count: Int) {
        self.init(uninitializedCount: count)
        pointer.update(repeating: 0, count: max(count, 1))
    }

    /// Allocates `count` floats without clearing them: for kernels that write every element.
    public init(uninitializedCount count: Int) {
        precondition(count >= 0, "negative element count")
        pointer = BufferPool.allocate(floats: count)
        self.count = count
        owner = nil
    }

    /// Borrows `count` floats at `pointer`, valid while `owner` lives.
    public init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = pointer
        self.count = count
        self.owner = owner
    }

    deinit {
        if owner == nil { BufferPool.release(pointer, floats: count) }
    }

    /// Takes the pages that lie wholly inside this storage out of the process (MADV_DONTNEED) when it
    /// borrows from a `FileBackedMemory` owner; a later read maps them back from the page cache, with
    /// the same contents. For weights whose working copy lives elsewhere (Conv2d's Winograd-domain
    /// weights, a LoRA's fused copy), so they do not sit in resident memory twice. Anything else:
    /// nothing happens.
    public func releaseResidentPages() {
        guard isFileBacked else { return }
        ResidentMemory.releasePages(pointer, byteCount: count * MemoryLayout<Float>.stride)
    }

    /// Whether this storage borrows a read-only file mapping (its pages can be dropped and read back).
    public var isFileBacked: Bool { owner is FileBackedMemory }
}

/// An owner of memory that mirrors a file and is only ever read (a private file mapping nobody
/// writes to): its pages can be dropped and are read back from the file when next touched.
public protocol FileBackedMemory: AnyObject {}

public struct Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    public let storage: TensorStorage

    /// A zero-filled tensor.
    public init(zeros shape: [Int]) {
        self.shape = shape
        storage = TensorStorage(count: Tensor.elementCount(shape))
    }

    /// A tensor whose elements the caller will all overwrite (kernel outputs).
    public init(uninitialized shape: [Int]) {
        self.shape = shape
        storage = TensorStorage(uninitializedCount: Tensor.elementCount(shape))
    }

    public init(shape: [Int], values: [Float]) {
        precondition(values.count == Tensor.elementCount(shape),
                     "\(values.count) values do not fill shape \(shape)")
        self.init(zeros: shape)
        values.withUnsafeBufferPointer { source in
            storage.pointer.update(from: source.baseAddress!, count: source.count)
        }
    }

    public init(shape: [Int], storage: TensorStorage) {
        precondition(storage.count == Tensor.elementCount(shape),
                     "storage of \(storage.count) floats does not fit shape \(shape)")
        self.shape = shape
        self.storage = storage
    }

    public static func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    public var data: UnsafeMutablePointer<Float> { storage.pointer }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: storage.pointer, count: storage.count) }

    /// The same memory seen with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, storage: storage)
    }

    /// A copy into freshly allocated memory.
    public func copy() -> Tensor {
        let result = Tensor(uninitialized: shape)
        result.data.update(from: data, count: count)
        return result
    }

    /// The elements as a Swift array (for tests and small tensors).
    public var scalars: [Float] { Array(buffer) }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = buffer.prefix(6).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(preview)\(count > 6 ? ", ..." : "")])"
    }
}
