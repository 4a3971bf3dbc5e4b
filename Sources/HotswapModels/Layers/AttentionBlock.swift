// diffusers/models/attention_processor.py: Attention with AttnProcessor2_0, for the cases Stable
// Diffusion uses: self/cross attention on tokens (UNet transformer blocks) and the VAE's
// single-head spatial attention with its own group norm and residual.
import HotswapCore

public final class AttentionBlock {
    public let heads: Int
    let toQ: Linear, toK: Linear, toV: Linear, toOut: Linear

    /// queryDim -> heads * dimHead; keys and values come from `crossAttentionDim` (nil: self-attention).
    public init(_ p: Parameters, _ path: ModulePath, queryDim: Int, crossAttentionDim: Int?,
                heads: Int, dimHead: Int, bias: Bool = false) {
        self.heads = heads
        let inner = heads * dimHead
        let contextDim = crossAttentionDim ?? queryDim
        toQ = Linear(p, path("to_q"), inFeatures: queryDim, outFeatures: inner, bias: bias)
        toK = Linear(p, path("to_k"), inFeatures: contextDim, outFeatures: inner, bias: bias)
        toV = Linear(p, path("to_v"), inFeatures: contextDim, outFeatures: inner, bias: bias)
        toOut = Linear(p, path("to_out", 0), inFeatures: inner, outFeatures: queryDim)
    }

    /// x: [batch, tokens, queryDim]; context: [batch, contextTokens, contextDim] or nil.
    public func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let source = context ?? x
        let attended = Attention.scaledDotProduct(query: toQ(x), key: toK(source), value: toV(source), heads: heads)
        return toOut(attended)
    }
}

/// The VAE mid-block attention: group norm, single-head attention over pixels, residual.
public final class SpatialAttentionBlock {
    let groupNorm: GroupNorm
    let attention: AttentionBlock

    public init(_ p: Parameters, _ path: ModulePath, channels: Int, groups: Int, epsilon: Float, headDim: Int) {
        groupNorm = GroupNorm(p, path("group_norm"), groups: groups, channels: channels, epsilon: epsilon)
        attention = AttentionBlock(p, path, queryDim: channels, crossAttentionDim: nil,
                                   heads: channels / headDim, dimHead: headDim, bias: true)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (height, width) = (x.shape[2], x.shape[3])
        let tokens = Layout.channelsLast(groupNorm(x))           // [batch, HW, C]
        let y = Layout.channelsFirst(attention(tokens), height: height, width: width)
        y.addInPlace(x)
        return y
    }
}
