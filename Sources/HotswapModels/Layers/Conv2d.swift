import HotswapCore

/// torch.nn.Conv2d (groups = 1). Like Linear, keeps the checkpoint's weight apart from the one
/// forward uses, so adapters can be fused and removed exactly.
public final class Conv2d {
    public let shape: Conv2dShape
    public let baseWeight: Tensor          // [out, in, kh, kw]
    public var weight: Tensor {
        didSet { winogradWeights = nil }  // a fused or restored weight: transform again when next needed
    }
    /// `weight` in the Winograd domain, made at the first forward that takes that path (16/9 of the
    /// weight's size for F(2x2, 3x3), 4x for F(4x4, 3x3); only layers that run on large feature maps).
    private var winogradWeights: Tensor?
    /// Whether `winogradWeights` is kept between calls. The VAE decoder (run once per image, after the
    /// UNet) turns it off: transforming its weights again costs ~50 ms a decode, keeping them ~250 MB.
    public var cachesWinogradWeights = true
    public let baseBias: Tensor?   // the checkpoint's
    public var bias: Tensor?       // what forward uses (an adapter may add to it)
    /// Runtime low-rank terms y += scale * up(down(x)), used instead of fusing when requested
    /// (kohya LoCon: down is a k x k conv with this layer's stride and padding, up a 1x1 conv).
    public var runtimeAdapters: [ConvLowRankDelta] = []

    public init(_ parameters: Parameters, _ path: ModulePath, inChannels: Int, outChannels: Int,
                kernelSize: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true) {
        shape = Conv2dShape(inChannels: inChannels, outChannels: outChannels,
                            kernelHeight: kernelSize, kernelWidth: kernelSize, stride: stride, padding: padding)
        baseWeight = parameters.take(path.parameter("weight"), shape: [outChannels, inChannels, kernelSize, kernelSize])
        weight = baseWeight
        baseBias = bias ? parameters.take(path.parameter("bias"), shape: [outChannels]) : nil
        self.bias = baseBias
        parameters.register(self, at: path.description)
    }

    /// x: [batch, in, H, W] -> [batch, out, H', W']
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var transformed = winogradWeights
        // The variant follows the map size, so a layer can need the other one at another image size.
        if let variant = WinogradConvolution.variant(for: shape, height: x.shape[2], width: x.shape[3]),
           transformed?.shape[0] != variant.products {
            transformed = WinogradConvolution.transformWeights(weight, variant: variant)
            if cachesWinogradWeights {
                winogradWeights = transformed
                // Forward now reads only the transformed copy: let the checkpoint's pages go (a
                // memory-mapped F32 file; they read back if a fuse or another map size needs them).
                if weight.storage === baseWeight.storage { baseWeight.storage.releaseResidentPages() }
            }
        }
        let y = Convolution.conv2d(x, weight: weight, bias: bias, shape: shape, winogradWeights: transformed)
        for delta in runtimeAdapters { delta.apply(x, layer: shape, into: y) }
        return y
    }
}

/// scale * up(down(x)) for one adapter on one convolution: down [rank, in, kh, kw] (the layer's
/// kernel, stride and padding), up [out, rank] (a 1x1 convolution).
public struct ConvLowRankDelta {
    public let down: Tensor   // [rank, in, kh, kw]
    public let up: Tensor     // [out, rank]
    public let scale: Float

    public init(down: Tensor, up: Tensor, scale: Float) {
        precondition(down.rank == 4 && up.rank == 2 && up.shape[1] == down.shape[0], "ConvLowRankDelta \(down.shape) \(up.shape)")
        self.down = down
        self.up = up
        self.scale = scale
    }

    /// y[b, out, HW] += scale * up[out, rank] * (down * x)[b, rank, HW]
    func apply(_ x: Tensor, layer: Conv2dShape, into y: Tensor) {
        let rank = down.shape[0]
        let downShape = Conv2dShape(inChannels: layer.inChannels, outChannels: rank,
                                    kernelHeight: layer.kernelHeight, kernelWidth: layer.kernelWidth,
                                    stride: layer.stride, padding: layer.padding)
        let hidden = Convolution.conv2d(x, weight: down, bias: nil, shape: downShape)
        let batch = y.shape[0], outChannels = y.shape[1]
        let plane = y.count / (batch * outChannels)
        for b in 0..<batch {
            BLAS.sgemm(m: outChannels, n: plane, k: rank, alpha: scale, a: up.data, lda: rank,
                       b: hidden.data + b * rank * plane, ldb: plane, beta: 1,
                       c: y.data + b * outChannels * plane, ldc: plane)
        }
    }
}
