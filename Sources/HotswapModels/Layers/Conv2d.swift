import HotswapCore

/// torch.nn.Conv2d (groups = 1). Like Linear, keeps the checkpoint's weight apart from the one
/// forward uses, so adapters can be fused and removed exactly.
public final class Conv2d {
    public let shape: Conv2dShape
    public let baseWeight: Tensor          // [out, in, kh, kw]
    public var weight: Tensor
    public let bias: Tensor?

    public init(_ parameters: Parameters, _ path: ModulePath, inChannels: Int, outChannels: Int,
                kernelSize: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true) {
        shape = Conv2dShape(inChannels: inChannels, outChannels: outChannels,
                            kernelHeight: kernelSize, kernelWidth: kernelSize, stride: stride, padding: padding)
        baseWeight = parameters.take(path.parameter("weight"), shape: [outChannels, inChannels, kernelSize, kernelSize])
        weight = baseWeight
        self.bias = bias ? parameters.take(path.parameter("bias"), shape: [outChannels]) : nil
        parameters.register(self, at: path.description)
    }

    /// x: [batch, in, H, W] -> [batch, out, H', W']
    public func callAsFunction(_ x: Tensor) -> Tensor {
        Convolution.conv2d(x, weight: weight, bias: bias, shape: shape)
    }
}
