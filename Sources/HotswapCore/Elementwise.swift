import CKernels
/// Simple elementwise kernels on contiguous floats.
public enum Elementwise {
    /// y += x
    @inline(__always)
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    /// out = base + scale * up x down, up [rows, rank], down [rank, cols], all row-major (base may be
    /// out): one LoRA term fused onto a weight in a single pass, summing over the rank in order.
    /// `streaming`: out is not read again soon (a fuse's last term), so it is written around the cache.
    public static func lowRankFuse(base: UnsafePointer<Float>, up: UnsafePointer<Float>, down: UnsafePointer<Float>,
                                   into out: UnsafeMutablePointer<Float>, rows: Int, columns: Int, rank: Int, scale: Float,
                                   streaming: Bool = false) {
        hs_lowrank_fuse(base, up, down, out, rows, columns, rank, scale, streaming ? 1 : 0)
    }

    /// x *= scale
    @inline(__always)
    public static func scale(_ x: UnsafeMutablePointer<Float>, by scale: Float, count: Int) {
        for i in 0..<count { x[i] *= scale }
    }

    /// Adds `bias[c]` to every element of channel c of a [channels, spatial] block.
    public static func addChannelBias(_ x: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>,
                                      channels: Int, spatial: Int) {
        for c in 0..<channels {
            let b = bias[c]
            let row = x + c * spatial
            for i in 0..<spatial { row[i] += b }
        }
    }

    /// Adds `bias[j]` to every row of a [rows, columns] matrix.
    public static func addRowBias(_ x: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>,
                                  rows: Int, columns: Int) {
        for r in 0..<rows {
            let row = x + r * columns
            for j in 0..<columns { row[j] += bias[j] }
        }
    }

    // MARK: Tensor maps (scheduler updates)
    // Each closure spells out diffusers' tensor expression in its evaluation order; Swift rounds
    // every operation (no FMA contraction), so the result equals torch's chain of separate
    // elementwise kernels.

    @inlinable
    public static func map(_ a: Tensor, _ f: (Float) -> Float) -> Tensor {
        let out = Tensor(zeros: a.shape)
        let x = a.data, o = out.data
        for i in 0..<a.count { o[i] = f(x[i]) }
        return out
    }

    @inlinable
    public static func map(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        precondition(a.count == b.count, "shape \(a.shape) vs \(b.shape)")
        let out = Tensor(zeros: a.shape)
        let x = a.data, y = b.data, o = out.data
        for i in 0..<a.count { o[i] = f(x[i], y[i]) }
        return out
    }

    @inlinable
    public static func map(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: (Float, Float, Float) -> Float) -> Tensor {
        precondition(a.count == b.count && a.count == c.count, "shapes \(a.shape), \(b.shape), \(c.shape)")
        let out = Tensor(zeros: a.shape)
        let x = a.data, y = b.data, z = c.data, o = out.data
        for i in 0..<a.count { o[i] = f(x[i], y[i], z[i]) }
        return out
    }

    @inlinable
    public static func map(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ d: Tensor,
                    _ f: (Float, Float, Float, Float) -> Float) -> Tensor {
        precondition(a.count == b.count && a.count == c.count && a.count == d.count, "mismatched shapes")
        let out = Tensor(zeros: a.shape)
        let x = a.data, y = b.data, z = c.data, w = d.data, o = out.data
        for i in 0..<a.count { o[i] = f(x[i], y[i], z[i], w[i]) }
        return out
    }

    @inlinable
    public static func map(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ d: Tensor, _ e: Tensor,
                    _ f: (Float, Float, Float, Float, Float) -> Float) -> Tensor {
        precondition([b, c, d, e].allSatisfy { $0.count == a.count }, "mismatched shapes")
        let out = Tensor(zeros: a.shape)
        let x = a.data, y = b.data, z = c.data, w = d.data, v = e.data, o = out.data
        for i in 0..<a.count { o[i] = f(x[i], y[i], z[i], w[i], v[i]) }
        return out
    }
}

extension Tensor {
    /// self + other, elementwise (same shapes).
    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor {
        precondition(lhs.shape == rhs.shape, "add: \(lhs.shape) vs \(rhs.shape)")
        let result = lhs.copy()
        Elementwise.add(rhs.data, into: result.data, count: result.count)
        return result
    }

    /// self * scalar, elementwise.
    public static func * (lhs: Tensor, rhs: Float) -> Tensor {
        let result = lhs.copy()
        Elementwise.scale(result.data, by: rhs, count: result.count)
        return result
    }

    /// Adds `other` into this tensor's storage (shapes must match).
    public func addInPlace(_ other: Tensor) {
        precondition(count == other.count, "addInPlace: \(shape) vs \(other.shape)")
        Elementwise.add(other.data, into: data, count: count)
    }

    /// Concatenates tensors along the first axis.
    public static func concatenate(_ tensors: [Tensor]) -> Tensor {
        precondition(!tensors.isEmpty, "concatenate of nothing")
        let tail = Array(tensors[0].shape.dropFirst())
        precondition(tensors.allSatisfy { Array($0.shape.dropFirst()) == tail }, "concatenate: shapes differ")
        let result = Tensor(uninitialized: [tensors.reduce(0) { $0 + $1.shape[0] }] + tail)
        var offset = 0
        for t in tensors {
            (result.data + offset).update(from: t.data, count: t.count)
            offset += t.count
        }
        return result
    }

    /// Rows [start, start + length) of the first axis, copied.
    public func slice(first start: Int, length: Int) -> Tensor {
        let inner = count / shape[0]
        let result = Tensor(uninitialized: [length] + shape.dropFirst())
        result.data.update(from: data + start * inner, count: length * inner)
        return result
    }
}
