// diffusers/models/resnet.py: ResnetBlock2D (time_embedding_norm "default", SiLU, no up/down).
import HotswapCore

public final class ResnetBlock2D {
    let norm1: GroupNorm, conv1: Conv2d
    let timeEmbProj: Linear?
    let norm2: GroupNorm, conv2: Conv2d
    let convShortcut: Conv2d?
    let outputScaleFactor: Float

    public init(_ p: Parameters, _ path: ModulePath, inChannels: Int, outChannels: Int,
                tembChannels: Int?, groups: Int, epsilon: Float, outputScaleFactor: Float = 1) {
        norm1 = GroupNorm(p, path("norm1"), groups: groups, channels: inChannels, epsilon: epsilon)
        conv1 = Conv2d(p, path("conv1"), inChannels: inChannels, outChannels: outChannels, kernelSize: 3, padding: 1)
        timeEmbProj = tembChannels.map { Linear(p, path("time_emb_proj"), inFeatures: $0, outFeatures: outChannels) }
        norm2 = GroupNorm(p, path("norm2"), groups: groups, channels: outChannels, epsilon: epsilon)
        conv2 = Conv2d(p, path("conv2"), inChannels: outChannels, outChannels: outChannels, kernelSize: 3, padding: 1)
        convShortcut = inChannels == outChannels ? nil
            : Conv2d(p, path("conv_shortcut"), inChannels: inChannels, outChannels: outChannels, kernelSize: 1)
        self.outputScaleFactor = outputScaleFactor
    }

    /// x: [batch, in, H, W]; temb: [batch, tembChannels] already passed through SiLU by the caller
    /// (every block applies the same nonlinearity to the same temb, so the UNet does it once).
    public func callAsFunction(_ x: Tensor, tembActivated: Tensor?) -> Tensor {
        var h = conv1(norm1(x, silu: true))
        if let timeEmbProj, let tembActivated {
            let t = timeEmbProj(tembActivated)   // [batch, out]
            let (batch, channels) = (h.shape[0], h.shape[1])
            let spatial = h.count / (batch * channels)
            for b in 0..<batch {
                Elementwise.addChannelBias(h.data + b * channels * spatial, bias: t.data + b * channels,
                                           channels: channels, spatial: spatial)
            }
        }
        h = conv2(norm2(h, silu: true))
        let shortcut = convShortcut.map { $0(x) } ?? x
        h.addInPlace(shortcut)
        if outputScaleFactor != 1 { Elementwise.scale(h.data, by: 1 / outputScaleFactor, count: h.count) }
        return h
    }
}
