import HotswapCore

/// torch.nn.Linear: y = x W^T + b over the last axis.
/// `weight` is what forward uses; `baseWeight` is the checkpoint's, never modified, so that an
/// adapter can point `weight` at a fused copy and restore by pointing back.
public final class Linear {
    public let inFeatures: Int, outFeatures: Int
    public let baseWeight: Tensor          // [out, in]
    public var weight: Tensor {            // [out, in]
        didSet { generation &+= 1 }
    }
    public let baseBias: Tensor?           // [out], the checkpoint's
    public var bias: Tensor? {             // [out], what forward uses (an adapter may add to it)
        didSet { generation &+= 1 }
    }
    /// Runtime low-rank terms y += scale * B (A x), used instead of fusing when requested.
    public var runtimeAdapters: [LowRankDelta] = [] {
        didSet { generation &+= 1 }
    }
    /// Changes whenever what forward computes may change (weight, bias or runtime adapters set):
    /// results kept from an earlier call are valid only at the same generation. An adapter swap
    /// writes fused weights only into buffers no layer uses, then sets them.
    public private(set) var generation = 0

    public init(_ parameters: Parameters, _ path: ModulePath, inFeatures: Int, outFeatures: Int, bias: Bool = true) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        baseWeight = parameters.take(path.parameter("weight"), shape: [outFeatures, inFeatures])
        weight = baseWeight
        baseBias = bias ? parameters.take(path.parameter("bias"), shape: [outFeatures]) : nil
        self.bias = baseBias
        parameters.register(self, at: path.description)
    }

    /// x: [..., in] -> [..., out]
    public func callAsFunction(_ x: Tensor) -> Tensor {
        precondition(x.shape.last == inFeatures, "Linear(\(inFeatures)->\(outFeatures)) got \(x.shape)")
        let rows = x.count / inFeatures
        return OpProfile.measure(.linear, flops: 2.0 * Double(rows * inFeatures * outFeatures)) { forward(x, rows: rows) }
    }

    func forward(_ x: Tensor, rows: Int) -> Tensor {
        let y = Tensor(uninitialized: Array(x.shape.dropLast()) + [outFeatures])
        LinearProduct.compute(x: x.data, rows: rows, inFeatures: inFeatures, weight: weight.data,
                              outFeatures: outFeatures, bias: bias?.data, into: y.data)
        for delta in runtimeAdapters { delta.apply(x.data, rows: rows, into: y.data) }
        return y
    }
}

/// scale * B A for one adapter on one layer: A [rank, in], B [out, rank] (linear form).
public struct LowRankDelta {
    public let down: Tensor   // A: [rank, in]
    public let up: Tensor     // B: [out, rank]
    public let scale: Float

    public init(down: Tensor, up: Tensor, scale: Float) {
        precondition(down.rank == 2 && up.rank == 2 && up.shape[1] == down.shape[0], "LowRankDelta \(down.shape) \(up.shape)")
        self.down = down
        self.up = up
        self.scale = scale
    }

    /// y[rows, out] += scale * (x[rows, in] A^T) B^T
    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        let (rank, inFeatures, outFeatures) = (down.shape[0], down.shape[1], up.shape[0])
        let hidden = UnsafeMutablePointer<Float>.allocate(capacity: rows * rank)
        defer { hidden.deallocate() }
        BLAS.sgemm(transB: true, m: rows, n: rank, k: inFeatures, a: x, lda: inFeatures,
                   b: down.data, ldb: inFeatures, c: hidden, ldc: rank)
        BLAS.sgemm(transB: true, m: rows, n: outFeatures, k: rank, alpha: scale, a: hidden, lda: rank,
                   b: up.data, ldb: rank, beta: 1, c: y, ldc: outFeatures)
    }
}
