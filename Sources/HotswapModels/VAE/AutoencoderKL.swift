// diffusers/models/autoencoders/autoencoder_kl.py (AutoencoderKL.decode) and
// autoencoders/vae.py (Decoder, with UNetMidBlock2D and UpDecoderBlock2D from unet_2d_blocks.py).
// Only the decoder is built: txt2img never encodes. The encoder's weights are accepted as part
// of the checkpoint and never read.
import HotswapCore

public struct AutoencoderKLConfig: Decodable, Sendable {
    public var inChannels: Int = 3
    public var outChannels: Int = 3
    public var upBlockTypes: [String] = ["UpDecoderBlock2D"]
    public var blockOutChannels: [Int] = [64]
    public var layersPerBlock: Int = 1
    public var actFn: String = "silu"
    public var latentChannels: Int = 4
    public var normNumGroups: Int = 32
    public var scalingFactor: Float = 0.18215
    public var shiftFactor: Float?
    public var usePostQuantConv: Bool = true
    public var midBlockAddAttention: Bool = true

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", upBlockTypes = "up_block_types"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block", actFn = "act_fn"
        case latentChannels = "latent_channels", normNumGroups = "norm_num_groups", scalingFactor = "scaling_factor"
        case shiftFactor = "shift_factor", usePostQuantConv = "use_post_quant_conv"
        case midBlockAddAttention = "mid_block_add_attention"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func read<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
            if let decoded = try c.decodeIfPresent(T.self, forKey: key) { value = decoded }
        }
        try read(.inChannels, &inChannels); try read(.outChannels, &outChannels)
        try read(.upBlockTypes, &upBlockTypes); try read(.blockOutChannels, &blockOutChannels)
        try read(.layersPerBlock, &layersPerBlock); try read(.actFn, &actFn)
        try read(.latentChannels, &latentChannels); try read(.normNumGroups, &normNumGroups)
        try read(.scalingFactor, &scalingFactor)
        shiftFactor = try c.decodeIfPresent(Float.self, forKey: .shiftFactor)
        try read(.usePostQuantConv, &usePostQuantConv); try read(.midBlockAddAttention, &midBlockAddAttention)
    }

    /// 2^(blocks - 1): how much smaller the latent is than the image (8 for Stable Diffusion).
    public var scaleFactor: Int { 1 << (blockOutChannels.count - 1) }
}

public final class AutoencoderKL {
    public let config: AutoencoderKLConfig
    let postQuantConv: Conv2d?
    let convIn: Conv2d
    let midResnets: [ResnetBlock2D]
    let midAttention: SpatialAttentionBlock?
    let upBlocks: [(resnets: [ResnetBlock2D], upsampler: Upsample2D?)]
    let convNormOut: GroupNorm
    let convOut: Conv2d

    public init(config: AutoencoderKLConfig, weights: [String: Tensor]) throws {
        let c = config
        func unsupported(_ field: String, _ value: String) -> ModelLoadingError {
            .unsupportedConfig(component: "vae", field: field, value: value)
        }
        if c.actFn != "silu" { throw unsupported("act_fn", c.actFn) }
        if c.shiftFactor != nil && c.shiftFactor != 0 { throw unsupported("shift_factor", "\(c.shiftFactor!)") }
        for t in c.upBlockTypes where t != "UpDecoderBlock2D" { throw unsupported("up_block_types", t) }
        guard !c.blockOutChannels.isEmpty, c.upBlockTypes.count == c.blockOutChannels.count else {
            throw unsupported("up_block_types", "\(c.upBlockTypes.count) blocks for \(c.blockOutChannels.count) block_out_channels")
        }
        for channels in c.blockOutChannels where channels % c.normNumGroups != 0 {
            throw unsupported("block_out_channels", "\(channels) is not divisible by \(c.normNumGroups) groups")
        }
        self.config = config
        // Old diffusers folders spell the mid-block attention query/key/value/proj_attn.
        var renamed: [String: Tensor] = [:]
        for (name, tensor) in weights {
            let modern = name.replacingOccurrences(of: ".query.", with: ".to_q.")
                .replacingOccurrences(of: ".key.", with: ".to_k.")
                .replacingOccurrences(of: ".value.", with: ".to_v.")
                .replacingOccurrences(of: ".proj_attn.", with: ".to_out.0.")
            renamed[modern] = tensor
        }
        let p = Parameters(component: "vae", tensors: renamed)
        p.ignore(prefix: "encoder.")
        p.ignore(prefix: "quant_conv.")
        let root = ModulePath()
        let decoder = root("decoder")
        let groups = c.normNumGroups, epsilon: Float = 1e-6
        let top = c.blockOutChannels.last!
        postQuantConv = c.usePostQuantConv
            ? Conv2d(p, root("post_quant_conv"), inChannels: c.latentChannels, outChannels: c.latentChannels, kernelSize: 1) : nil
        convIn = Conv2d(p, decoder("conv_in"), inChannels: c.latentChannels, outChannels: top, kernelSize: 3, padding: 1)
        midResnets = (0..<2).map {
            ResnetBlock2D(p, decoder("mid_block")("resnets", $0), inChannels: top, outChannels: top,
                          tembChannels: nil, groups: groups, epsilon: epsilon)
        }
        midAttention = c.midBlockAddAttention
            ? SpatialAttentionBlock(p, decoder("mid_block")("attentions", 0), channels: top, groups: groups,
                                    epsilon: epsilon, headDim: top) : nil
        let reversed = Array(c.blockOutChannels.reversed())
        var blocks: [([ResnetBlock2D], Upsample2D?)] = []
        var outChannels = reversed[0]
        for i in 0..<reversed.count {
            let previous = outChannels
            outChannels = reversed[i]
            let path = decoder("up_blocks", i)
            let resnets = (0...c.layersPerBlock).map { j in
                ResnetBlock2D(p, path("resnets", j), inChannels: j == 0 ? previous : outChannels, outChannels: outChannels,
                              tembChannels: nil, groups: groups, epsilon: epsilon)
            }
            let upsampler = i < reversed.count - 1 ? Upsample2D(p, path("upsamplers", 0), channels: outChannels) : nil
            blocks.append((resnets, upsampler))
        }
        upBlocks = blocks
        convNormOut = GroupNorm(p, decoder("conv_norm_out"), groups: groups, channels: c.blockOutChannels[0], epsilon: epsilon)
        convOut = Conv2d(p, decoder("conv_out"), inChannels: c.blockOutChannels[0], outChannels: c.outChannels,
                         kernelSize: 3, padding: 1)
        try p.finish()
        for conv in p.convolutions.values { conv.cachesWinogradWeights = false }
    }

    /// AutoencoderKL.decode(z).sample for z already divided by scaling_factor:
    /// [batch, latent, h, w] -> [batch, out, h * scale, w * scale], roughly in [-1, 1].
    public func decode(_ latents: Tensor) -> Tensor {
        var h = postQuantConv.map { $0(latents) } ?? latents
        h = convIn(h)
        h = midResnets[0](h, tembActivated: nil)
        if let midAttention { h = midAttention(h) }
        h = midResnets[1](h, tembActivated: nil)
        for block in upBlocks {
            for resnet in block.resnets { h = resnet(h, tembActivated: nil) }
            // Each block works at twice the size of the last, so most buffers this one left in the pool
            // fit nothing that follows. Draining before each upsampler: 512x512 decode peak RSS 1.95 ->
            // 1.57 GB, for ~0.5 s of page faults (11.4 -> 11.9 s).
            BufferPool.drain()
            if let upsampler = block.upsampler { h = upsampler(h) }
        }
        return convOut(convNormOut(h, silu: true))
    }
}
