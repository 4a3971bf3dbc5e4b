// diffusers/models/unets/unet_2d_blocks.py: CrossAttnDownBlock2D, DownBlock2D,
// UNetMidBlock2DCrossAttn, UpBlock2D, CrossAttnUpBlock2D (one class each there; here one type
// per direction, with optional attentions, since the blocks differ only in having them).
import HotswapCore

/// Settings every block shares, taken from the UNet config.
struct BlockSettings {
    let tembChannels: Int
    let groups: Int
    let epsilon: Float
    let crossAttentionDim: Int
}

final class DownBlock {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let downsampler: Downsample2D?

    init(_ p: Parameters, _ path: ModulePath, inChannels: Int, outChannels: Int, layers: Int,
         crossAttention: (heads: Int, transformerLayers: Int, onlyCross: Bool)?, addDownsample: Bool,
         downsamplePadding: Int, settings s: BlockSettings) {
        resnets = (0..<layers).map { j in
            ResnetBlock2D(p, path("resnets", j), inChannels: j == 0 ? inChannels : outChannels, outChannels: outChannels,
                          tembChannels: s.tembChannels, groups: s.groups, epsilon: s.epsilon)
        }
        attentions = crossAttention.map { spec in
            (0..<layers).map { j in
                Transformer2DModel(p, path("attentions", j), heads: spec.heads, headDim: outChannels / spec.heads,
                                   inChannels: outChannels, layers: spec.transformerLayers,
                                   crossAttentionDim: s.crossAttentionDim, groups: s.groups, onlyCrossAttention: spec.onlyCross)
            }
        } ?? []
        downsampler = addDownsample
            ? Downsample2D(p, path("downsamplers", 0), channels: outChannels, padding: downsamplePadding) : nil
    }

    /// Returns the block output and the states its skip connections hand to the up path.
    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor) -> (Tensor, [Tensor]) {
        var h = x
        var states: [Tensor] = []
        for (j, resnet) in resnets.enumerated() {
            h = resnet(h, tembActivated: temb)
            if !attentions.isEmpty { h = attentions[j](h, context: context) }
            states.append(h)
        }
        if let downsampler {
            h = downsampler(h)
            states.append(h)
        }
        return (h, states)
    }
}

final class MidBlockCrossAttn {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]

    init(_ p: Parameters, _ path: ModulePath, channels: Int, heads: Int, transformerLayers: Int,
         outputScaleFactor: Float, settings s: BlockSettings) {
        resnets = (0..<2).map { j in
            ResnetBlock2D(p, path("resnets", j), inChannels: channels, outChannels: channels,
                          tembChannels: s.tembChannels, groups: s.groups, epsilon: s.epsilon,
                          outputScaleFactor: outputScaleFactor)
        }
        attentions = [Transformer2DModel(p, path("attentions", 0), heads: heads, headDim: channels / heads,
                                         inChannels: channels, layers: transformerLayers,
                                         crossAttentionDim: s.crossAttentionDim, groups: s.groups, onlyCrossAttention: false)]
    }

    func callAsFunction(_ x: Tensor, temb: Tensor, context: Tensor) -> Tensor {
        var h = resnets[0](x, tembActivated: temb)
        h = attentions[0](h, context: context)
        return resnets[1](h, tembActivated: temb)
    }
}

final class UpBlock {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let upsampler: Upsample2D?

    init(_ p: Parameters, _ path: ModulePath, inChannels: Int, outChannels: Int, previousOutChannels: Int,
         layers: Int, crossAttention: (heads: Int, transformerLayers: Int, onlyCross: Bool)?, addUpsample: Bool,
         settings s: BlockSettings) {
        resnets = (0..<layers).map { j in
            let skipChannels = j == layers - 1 ? inChannels : outChannels
            let resnetIn = j == 0 ? previousOutChannels : outChannels
            return ResnetBlock2D(p, path("resnets", j), inChannels: resnetIn + skipChannels, outChannels: outChannels,
                                 tembChannels: s.tembChannels, groups: s.groups, epsilon: s.epsilon)
        }
        attentions = crossAttention.map { spec in
            (0..<layers).map { j in
                Transformer2DModel(p, path("attentions", j), heads: spec.heads, headDim: outChannels / spec.heads,
                                   inChannels: outChannels, layers: spec.transformerLayers,
                                   crossAttentionDim: s.crossAttentionDim, groups: s.groups, onlyCrossAttention: spec.onlyCross)
            }
        } ?? []
        upsampler = addUpsample ? Upsample2D(p, path("upsamplers", 0), channels: outChannels) : nil
    }

    /// `skips` are consumed from the end, one per resnet.
    func callAsFunction(_ x: Tensor, skips: inout [Tensor], temb: Tensor, context: Tensor,
                        upsampleSize: (height: Int, width: Int)?) -> Tensor {
        var h = x
        for (j, resnet) in resnets.enumerated() {
            let skip = skips.removeLast()
            h = resnet(Layout.concatChannels([h, skip]), tembActivated: temb)
            if !attentions.isEmpty { h = attentions[j](h, context: context) }
        }
        if let upsampler { h = upsampler(h, size: upsampleSize) }
        return h
    }
}
