// diffusers/models/downsampling.py Downsample2D and upsampling.py Upsample2D, with use_conv=True.
import HotswapCore

public final class Downsample2D {
    let conv: Conv2d
    public init(_ p: Parameters, _ path: ModulePath, channels: Int, padding: Int = 1) {
        conv = Conv2d(p, path("conv"), inChannels: channels, outChannels: channels, kernelSize: 3, stride: 2, padding: padding)
    }
    public func callAsFunction(_ x: Tensor) -> Tensor { conv(x) }
}

public final class Upsample2D {
    let conv: Conv2d
    public init(_ p: Parameters, _ path: ModulePath, channels: Int) {
        conv = Conv2d(p, path("conv"), inChannels: channels, outChannels: channels, kernelSize: 3, padding: 1)
    }
    /// Nearest 2x (or to `size`, when the UNet forwards the skip connection's size), then 3x3 conv.
    public func callAsFunction(_ x: Tensor, size: (height: Int, width: Int)? = nil) -> Tensor {
        let target = size ?? (x.shape[2] * 2, x.shape[3] * 2)
        return conv(Layout.resizeNearest(x, height: target.height, width: target.width))
    }
}
