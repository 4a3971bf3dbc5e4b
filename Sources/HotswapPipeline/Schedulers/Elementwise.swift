import HotswapCore

/// Element-by-element float32 arithmetic for scheduler updates. Each closure spells out diffusers'
/// tensor expression in its evaluation order; Swift rounds every operation (no FMA contraction),
/// so the result equals torch's chain of separate elementwise kernels.
enum Elementwise {
    @inline(__always)
    static func map(_ a: Tensor, _ f: (Float) -> Float) -> Tensor {
        let out = Tensor(zeros: a.shape)
        let x = a.data, o = out.data
        for i in 0..<a.count { o[i] = f(x[i]) }
        return out
    }

    @inline(__always)
    static func map(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        precondition(a.count == b.count, "shape \(a.shape) vs \(b.shape)")
        let out = Tensor(zeros: a.shape)
        let x = a.data, y = b.data, o = out.data
        for i in 0..<a.count { o[i] = f(x[i], y[i]) }
        return out
    }

    @inline(__always)
    static func map(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: (Float, Float, Float) -> Float) -> Tensor {
        precondition(a.count == b.count && a.count == c.count, "shapes \(a.shape), \(b.shape), \(c.shape)")
        let out = Tensor(zeros: a.shape)
        let x = a.data, y = b.data, z = c.data, o = out.data
        for i in 0..<a.count { o[i] = f(x[i], y[i], z[i]) }
        return out
    }

    @inline(__always)
    static func map(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ d: Tensor,
                    _ f: (Float, Float, Float, Float) -> Float) -> Tensor {
        precondition(a.count == b.count && a.count == c.count && a.count == d.count, "mismatched shapes")
        let out = Tensor(zeros: a.shape)
        let x = a.data, y = b.data, z = c.data, w = d.data, o = out.data
        for i in 0..<a.count { o[i] = f(x[i], y[i], z[i], w[i]) }
        return out
    }

    @inline(__always)
    static func map(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ d: Tensor, _ e: Tensor,
                    _ f: (Float, Float, Float, Float, Float) -> Float) -> Tensor {
        precondition([b, c, d, e].allSatisfy { $0.count == a.count }, "mismatched shapes")
        let out = Tensor(zeros: a.shape)
        let x = a.data, y = b.data, z = c.data, w = d.data, v = e.data, o = out.data
        for i in 0..<a.count { o[i] = f(x[i], y[i], z[i], w[i], v[i]) }
        return out
    }
}
