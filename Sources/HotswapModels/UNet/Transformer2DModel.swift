// diffusers/models/transformers/transformer_2d.py (continuous input) and
// diffusers/models/attention.py BasicTransformerBlock + FeedForward(GEGLU), as SD 1.x/2.x use them.
import HotswapCore

public final class Transformer2DModel {
    let norm: GroupNorm
    let projIn: Linear, projOut: Linear   // 1x1 convs (SD1) and linears (SD2) are the same math on tokens
    let transformerBlocks: [BasicTransformerBlock]

    public init(_ p: Parameters, _ path: ModulePath, heads: Int, headDim: Int, inChannels: Int,
                layers: Int, crossAttentionDim: Int, groups: Int, onlyCrossAttention: Bool) {
        let inner = heads * headDim
        norm = GroupNorm(p, path("norm"), groups: groups, channels: inChannels, epsilon: 1e-6)
        projIn = Linear(p, path("proj_in"), inFeatures: inChannels, outFeatures: inner)
        transformerBlocks = (0..<layers).map {
            BasicTransformerBlock(p, path("transformer_blocks", $0), dim: inner, heads: heads, headDim: headDim,
                                  crossAttentionDim: crossAttentionDim, onlyCrossAttention: onlyCrossAttention)
        }
        projOut = Linear(p, path("proj_out"), inFeatures: inner, outFeatures: inChannels)
    }

    /// x: [batch, C, H, W]; context: [batch, tokens, crossAttentionDim]
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (height, width) = (x.shape[2], x.shape[3])
        var h = projIn(Layout.channelsLast(norm(x)))              // [batch, HW, inner]
        for block in transformerBlocks { h = block(h, context: context) }
        let y = Layout.channelsFirst(projOut(h), height: height, width: width)
        y.addInPlace(x)
        return y
    }
}

public final class BasicTransformerBlock {
    let norm1: LayerNorm, attn1: AttentionBlock
    let norm2: LayerNorm, attn2: AttentionBlock
    let norm3: LayerNorm
    let ffProj: Linear, ffOut: Linear       // ff.net.0.proj (GEGLU), ff.net.2
    let onlyCrossAttention: Bool

    init(_ p: Parameters, _ path: ModulePath, dim: Int, heads: Int, headDim: Int,
         crossAttentionDim: Int, onlyCrossAttention: Bool) {
        self.onlyCrossAttention = onlyCrossAttention
        norm1 = LayerNorm(p, path("norm1"), features: dim, epsilon: 1e-5)
        attn1 = AttentionBlock(p, path("attn1"), queryDim: dim,
                               crossAttentionDim: onlyCrossAttention ? crossAttentionDim : nil,
                               heads: heads, dimHead: headDim)
        norm2 = LayerNorm(p, path("norm2"), features: dim, epsilon: 1e-5)
        attn2 = AttentionBlock(p, path("attn2"), queryDim: dim, crossAttentionDim: crossAttentionDim,
                               heads: heads, dimHead: headDim)
        norm3 = LayerNorm(p, path("norm3"), features: dim, epsilon: 1e-5)
        let inner = dim * 4
        ffProj = Linear(p, path("ff")("net", 0)("proj"), inFeatures: dim, outFeatures: inner * 2)
        ffOut = Linear(p, path("ff")("net", 2), inFeatures: inner, outFeatures: dim)
    }

    /// x: [batch, tokens, dim]
    func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let h = x
        h.addInPlace(attn1(norm1(h), context: onlyCrossAttention ? context : nil))
        h.addInPlace(attn2(norm2(h), context: context))
        h.addInPlace(ffOut(geglu(ffProj(norm3(h)))))
        return h
    }

    /// [rows, 2 * inner] -> hidden * gelu(gate), with hidden the first half of each row.
    func geglu(_ x: Tensor) -> Tensor {
        let inner = x.shape.last! / 2
        let rows = x.count / (2 * inner)
        let y = Tensor(uninitialized: Array(x.shape.dropLast()) + [inner])
        Activations.geglu(x.data, into: y.data, rows: rows, inner: inner)
        return y
    }
}
