// diffusers/models/unets/unet_2d_condition.py: UNet2DConditionModel, for the configurations
// Stable Diffusion 1.x/2.x and SDXL ("text_time" addition embedding) use. What it does not support
// (class embeddings, other addition embeddings,
// time_cond_proj_dim, dual cross attention, other block types) is refused at load with the
// config field named.
import Foundation
import HotswapCore

/// SDXL's micro-conditioning (diffusers' added_cond_kwargs): the pooled text embedding
/// [batch, pooled] and the six time ids per row (original size, crop top-left, target size).
public struct AddedConditions {
    public var textEmbeds: Tensor
    public var timeIds: [[Float]]
    public init(textEmbeds: Tensor, timeIds: [[Float]]) {
        self.textEmbeds = textEmbeds
        self.timeIds = timeIds
    }
}

public final class UNet2DConditionModel {
    public let config: UNet2DConditionConfig
    let timestepChannels: Int
    let linear1: Linear, linear2: Linear   // time_embedding
    /// add_embedding (text_time): Linear, SiLU, Linear over [text_embeds, add_time_proj(time_ids)].
    let addEmbedding: (linear1: Linear, linear2: Linear, timeChannels: Int)?
    let convIn: Conv2d
    let downBlocks: [DownBlock]
    let midBlock: MidBlockCrossAttn?
    let upBlocks: [UpBlock]
    let convNormOut: GroupNorm
    let convOut: Conv2d
    /// Every Linear and Conv2d by module path (for adapters).
    public let linears: [String: Linear]
    public let convolutions: [String: Conv2d]

    public init(config: UNet2DConditionConfig, weights: [String: Tensor]) throws {
        let c = config
        func unsupported(_ field: String, _ value: String) -> ModelLoadingError {
            .unsupportedConfig(component: "unet", field: field, value: value)
        }
        if c.classEmbedType != nil { throw unsupported("class_embed_type", c.classEmbedType!) }
        if let type = c.additionEmbedType, type != "text_time" { throw unsupported("addition_embed_type", type) }
        if c.additionEmbedType == "text_time" {
            guard let dim = c.additionTimeEmbedDim, dim > 0, dim % 2 == 0 else {
                throw unsupported("addition_time_embed_dim", c.additionTimeEmbedDim.map(String.init) ?? "null")
            }
            guard let width = c.projectionClassEmbeddingsInputDim, width > 6 * dim else {
                throw unsupported("projection_class_embeddings_input_dim", c.projectionClassEmbeddingsInputDim.map(String.init) ?? "null")
            }
        }
        if c.encoderHidDim != nil { throw unsupported("encoder_hid_dim", "\(c.encoderHidDim!)") }
        if c.timeCondProjDim != nil { throw unsupported("time_cond_proj_dim", "\(c.timeCondProjDim!)") }
        if c.dualCrossAttention { throw unsupported("dual_cross_attention", "true") }
        if c.timeEmbeddingType != "positional" { throw unsupported("time_embedding_type", c.timeEmbeddingType) }
        if c.resnetTimeScaleShift != "default" { throw unsupported("resnet_time_scale_shift", c.resnetTimeScaleShift) }
        if c.actFn != "silu" { throw unsupported("act_fn", c.actFn) }
        if c.timestepPostAct != nil { throw unsupported("timestep_post_act", c.timestepPostAct!) }
        if c.timeEmbeddingActFn != nil { throw unsupported("time_embedding_act_fn", c.timeEmbeddingActFn!) }
        if c.attentionType != "default" { throw unsupported("attention_type", c.attentionType) }
        if c.resnetOutScaleFactor != 1 { throw unsupported("resnet_out_scale_factor", "\(c.resnetOutScaleFactor)") }
        if c.centerInputSample { throw unsupported("center_input_sample", "true") }
        let blockCount = c.blockOutChannels.count
        guard c.downBlockTypes.count == blockCount, c.upBlockTypes.count == blockCount else {
            throw unsupported("down_block_types/up_block_types", "\(c.downBlockTypes.count)/\(c.upBlockTypes.count) blocks for \(blockCount) block_out_channels")
        }
        guard let groups = c.normNumGroups else { throw unsupported("norm_num_groups", "null") }
        for t in c.downBlockTypes where !["CrossAttnDownBlock2D", "DownBlock2D"].contains(t) { throw unsupported("down_block_types", t) }
        for t in c.upBlockTypes where !["CrossAttnUpBlock2D", "UpBlock2D"].contains(t) { throw unsupported("up_block_types", t) }
        if let mid = c.midBlockType, mid != "UNetMidBlock2DCrossAttn" { throw unsupported("mid_block_type", mid) }
        if c.convInKernel % 2 == 0 { throw unsupported("conv_in_kernel", "\(c.convInKernel)") }
        if c.convOutKernel % 2 == 0 { throw unsupported("conv_out_kernel", "\(c.convOutKernel)") }

        // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (a historical
        // misnomer: SD configs put the head count in attention_head_dim).
        guard let headsSpec = c.numAttentionHeads ?? c.attentionHeadDim else {
            throw unsupported("attention_head_dim", "null")
        }
        let heads = headsSpec.expanded(blockCount)
        let layersPerBlock = c.layersPerBlock.expanded(blockCount)
        let crossDims = c.crossAttentionDim.expanded(blockCount)
        let transformerLayers = c.transformerLayersPerBlock.expanded(blockCount)
        let onlyCross = c.onlyCrossAttention.expanded(blockCount)
        for (name, count) in [("num_attention_heads", heads.count), ("layers_per_block", layersPerBlock.count),
                              ("cross_attention_dim", crossDims.count), ("transformer_layers_per_block", transformerLayers.count),
                              ("only_cross_attention", onlyCross.count)] where count != blockCount {
            throw unsupported(name, "\(count) values for \(blockCount) blocks")
        }
        if Set(crossDims).count != 1 { throw unsupported("cross_attention_dim", "\(crossDims) (per-block values)") }
        for (i, channels) in c.blockOutChannels.enumerated() where channels % heads[i] != 0 || channels % groups != 0 {
            throw unsupported("block_out_channels", "\(channels) is not divisible by \(heads[i]) heads and \(groups) groups")
        }

        self.config = config
        let p = Parameters(component: "unet", tensors: weights)
        let root = ModulePath()
        timestepChannels = c.blockOutChannels[0]
        let tembChannels = c.timeEmbeddingDim ?? c.blockOutChannels[0] * 4
        linear1 = Linear(p, root("time_embedding")("linear_1"), inFeatures: timestepChannels, outFeatures: tembChannels)
        linear2 = Linear(p, root("time_embedding")("linear_2"), inFeatures: tembChannels, outFeatures: tembChannels)
        if c.additionEmbedType == "text_time", let dim = c.additionTimeEmbedDim, let width = c.projectionClassEmbeddingsInputDim {
            addEmbedding = (Linear(p, root("add_embedding")("linear_1"), inFeatures: width, outFeatures: tembChannels),
                            Linear(p, root("add_embedding")("linear_2"), inFeatures: tembChannels, outFeatures: tembChannels),
                            dim)
        } else {
            addEmbedding = nil
        }
        convIn = Conv2d(p, root("conv_in"), inChannels: c.inChannels, outChannels: c.blockOutChannels[0],
                        kernelSize: c.convInKernel, padding: (c.convInKernel - 1) / 2)
        let settings = BlockSettings(tembChannels: tembChannels, groups: groups, epsilon: c.normEps,
                                     crossAttentionDim: crossDims[0])

        var down: [DownBlock] = []
        var outChannels = c.blockOutChannels[0]
        for (i, type) in c.downBlockTypes.enumerated() {
            let inChannels = outChannels
            outChannels = c.blockOutChannels[i]
            let attention = type == "CrossAttnDownBlock2D" ? (heads[i], transformerLayers[i], onlyCross[i]) : nil
            down.append(DownBlock(p, root("down_blocks", i), inChannels: inChannels, outChannels: outChannels,
                                  layers: layersPerBlock[i], crossAttention: attention,
                                  addDownsample: i < blockCount - 1, downsamplePadding: c.downsamplePadding,
                                  settings: settings))
        }
        downBlocks = down

        midBlock = c.midBlockType == nil ? nil
            : MidBlockCrossAttn(p, root("mid_block"), channels: c.blockOutChannels[blockCount - 1],
                                heads: heads[blockCount - 1], transformerLayers: transformerLayers[blockCount - 1],
                                outputScaleFactor: c.midBlockScaleFactor, settings: settings)

        let reversedChannels = Array(c.blockOutChannels.reversed())
        let reversedHeads = Array(heads.reversed())
        let reversedLayers = Array(layersPerBlock.reversed())
        let reversedTransformerLayers = c.reverseTransformerLayersPerBlock ?? Array(transformerLayers.reversed())
        let reversedOnlyCross = Array(onlyCross.reversed())
        var up: [UpBlock] = []
        outChannels = reversedChannels[0]
        for (i, type) in c.upBlockTypes.enumerated() {
            let previous = outChannels
            outChannels = reversedChannels[i]
            let inChannels = reversedChannels[min(i + 1, blockCount - 1)]
            let attention = type == "CrossAttnUpBlock2D" ? (reversedHeads[i], reversedTransformerLayers[i], reversedOnlyCross[i]) : nil
            up.append(UpBlock(p, root("up_blocks", i), inChannels: inChannels, outChannels: outChannels,
                              previousOutChannels: previous, layers: reversedLayers[i] + 1, crossAttention: attention,
                              addUpsample: i < blockCount - 1, settings: settings))
        }
        upBlocks = up
        convNormOut = GroupNorm(p, root("conv_norm_out"), groups: groups, channels: c.blockOutChannels[0], epsilon: c.normEps)
        convOut = Conv2d(p, root("conv_out"), inChannels: c.blockOutChannels[0], outChannels: c.outChannels,
                         kernelSize: c.convOutKernel, padding: (c.convOutKernel - 1) / 2)
        try p.finish()
        linears = p.linears
        convolutions = p.convolutions
    }

    /// Whether the model needs `added` (SDXL's text_time conditioning).
    public var takesAddedConditions: Bool { addEmbedding != nil }

    /// A private copy of the last context: equal contexts (every step of a render) are replaced by
    /// it, so that a storage's identity means its contents to the cross-attention key/value cache
    /// (`AttentionBlock`): nobody else can write into this copy.
    private var lastContext: Tensor?

    private func canonicalContext(_ context: Tensor) -> Tensor {
        if let lastContext, lastContext.shape == context.shape,
           memcmp(lastContext.data, context.data, context.count * MemoryLayout<Float>.stride) == 0 {
            return lastContext
        }
        let copy = context.copy()
        lastContext = copy
        return copy
    }

    /// sample [batch, in, h, w], timestep (same for the whole batch), context [batch, tokens, dim]
    /// -> noise prediction [batch, out, h, w]. `added`: SDXL's pooled text and time ids, required
    /// exactly when `takesAddedConditions`.
    public func callAsFunction(_ sample: Tensor, timestep: Float, context: Tensor, added: AddedConditions? = nil) -> Tensor {
        let context = canonicalContext(context)
        let batch = sample.shape[0]
        precondition(context.shape[0] == batch, "unet: sample \(sample.shape) context \(context.shape)")
        precondition((added != nil) == takesAddedConditions, "unet: added conditions \(added == nil ? "missing" : "not taken")")
        // time_proj + time_embedding; every resnet applies SiLU to temb first, so do it once here.
        let projected = Self.timestepEmbedding(timestep, channels: timestepChannels,
                                               flipSinToCos: config.flipSinToCos, freqShift: Float(config.freqShift))
        let timestepRows = Tensor.concatenate(Array(repeating: projected, count: batch))
        let hidden = linear1(timestepRows)
        Activations.silu(hidden.data, count: hidden.count)
        let temb = linear2(hidden)
        if let addEmbedding, let added {
            temb.addInPlace(addedEmbedding(added, addEmbedding, batch: batch))
        }
        Activations.silu(temb.data, count: temb.count)

        var h = convIn(sample)
        var skips: [Tensor] = [h]
        for block in downBlocks {
            let (out, states) = block(h, temb: temb, context: context)
            h = out
            skips.append(contentsOf: states)
        }
        if let midBlock { h = midBlock(h, temb: temb, context: context) }

        // diffusers forwards the skip's size to the upsampler when the latent is not divisible
        // by 2^upsamplers, so odd sizes come back to the right shape.
        let upFactor = 1 << (upBlocks.count - 1)
        let forwardSize = sample.shape[2] % upFactor != 0 || sample.shape[3] % upFactor != 0
        for (i, block) in upBlocks.enumerated() {
            let consumed = block.resnets.count
            var size: (height: Int, width: Int)? = nil
            if forwardSize && i < upBlocks.count - 1 {
                let next = skips[skips.count - consumed - 1]
                size = (next.shape[2], next.shape[3])
            }
            h = block(h, skips: &skips, temb: temb, context: context, upsampleSize: size)
        }
        return convOut(convNormOut(h, silu: true))
    }

    /// aug_emb = add_embedding(concat(text_embeds, add_time_proj(time_ids).reshape(batch, -1))).
    func addedEmbedding(_ added: AddedConditions, _ layers: (linear1: Linear, linear2: Linear, timeChannels: Int),
                        batch: Int) -> Tensor {
        let pooled = added.textEmbeds.count / batch, channels = layers.timeChannels
        precondition(added.timeIds.count == batch && added.textEmbeds.shape[0] == batch, "unet: added conditions for another batch")
        let width = pooled + added.timeIds[0].count * channels
        let input = Tensor(uninitialized: [batch, width])
        for b in 0..<batch {
            let row = input.data + b * width
            row.update(from: added.textEmbeds.data + b * pooled, count: pooled)
            for (i, value) in added.timeIds[b].enumerated() {
                let embedding = Self.timestepEmbedding(value, channels: channels, flipSinToCos: config.flipSinToCos,
                                                       freqShift: Float(config.freqShift))
                (row + pooled + i * channels).update(from: embedding.data, count: channels)
            }
        }
        let hidden = layers.linear1(input)
        Activations.silu(hidden.data, count: hidden.count)
        return layers.linear2(hidden)
    }

    /// diffusers.models.embeddings.get_timestep_embedding for one timestep: [1, channels].
    /// Computed in Float32 like the reference (exponent, product and sin/cos all in float32).
    static func timestepEmbedding(_ timestep: Float, channels: Int, flipSinToCos: Bool, freqShift: Float) -> Tensor {
        let half = channels / 2
        var values = [Float](repeating: 0, count: channels)
        for i in 0..<half {
            let exponent = -Float(Foundation.log(10000.0)) * Float(i) / (Float(half) - freqShift)
            let argument = timestep * Foundation.exp(exponent)
            let (sine, cosine) = (Foundation.sin(argument), Foundation.cos(argument))
            values[i] = flipSinToCos ? cosine : sine
            values[half + i] = flipSinToCos ? sine : cosine
        }
        return Tensor(shape: [1, channels], values: values)
    }
}
