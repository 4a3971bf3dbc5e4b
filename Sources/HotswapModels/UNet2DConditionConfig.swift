// Mirrors the config.json of diffusers' UNet2DConditionModel
// (diffusers/models/unets/unet_2d_condition.py, __init__ arguments and defaults).

public struct UNet2DConditionConfig: Decodable, Sendable {
    public var sampleSize: Int?
    public var inChannels: Int = 4
    public var outChannels: Int = 4
    public var centerInputSample: Bool = false
    public var flipSinToCos: Bool = true
    public var freqShift: Int = 0
    public var downBlockTypes: [String] = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
    public var midBlockType: String? = "UNetMidBlock2DCrossAttn"
    public var upBlockTypes: [String] = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    public var onlyCrossAttention: OneOrMany<Bool> = .one(false)
    public var blockOutChannels: [Int] = [320, 640, 1280, 1280]
    public var layersPerBlock: OneOrMany<Int> = .one(2)
    public var downsamplePadding: Int = 1
    public var midBlockScaleFactor: Float = 1
    public var actFn: String = "silu"
    public var normNumGroups: Int? = 32
    public var normEps: Float = 1e-5
    public var crossAttentionDim: OneOrMany<Int> = .one(1280)
    public var transformerLayersPerBlock: OneOrMany<Int> = .one(1)
    public var reverseTransformerLayersPerBlock: [Int]?
    public var attentionHeadDim: OneOrMany<Int>? = .one(8)
    public var numAttentionHeads: OneOrMany<Int>?
    public var dualCrossAttention: Bool = false
    public var useLinearProjection: Bool = false
    public var classEmbedType: String?
    public var additionEmbedType: String?
    /// SDXL's "text_time" addition embedding: the channels of each micro-conditioning value's
    /// sinusoidal embedding, and the width of [pooled text, time ids] that add_embedding takes.
    public var additionTimeEmbedDim: Int?
    public var projectionClassEmbeddingsInputDim: Int?
    public var encoderHidDim: Int?
    public var upcastAttention: Bool = false
    public var resnetTimeScaleShift: String = "default"
    public var resnetOutScaleFactor: Float = 1
    public var timeEmbeddingType: String = "positional"
    public var timeEmbeddingDim: Int?
    public var timeEmbeddingActFn: String?
    public var timestepPostAct: String?
    public var timeCondProjDim: Int?
    public var convInKernel: Int = 3
    public var convOutKernel: Int = 3
    public var attentionType: String = "default"

    enum CodingKeys: String, CodingKey {
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case centerInputSample = "center_input_sample", flipSinToCos = "flip_sin_to_cos", freqShift = "freq_shift"
        case downBlockTypes = "down_block_types", midBlockType = "mid_block_type", upBlockTypes = "up_block_types"
        case onlyCrossAttention = "only_cross_attention", blockOutChannels = "block_out_channels"
        case layersPerBlock = "layers_per_block", downsamplePadding = "downsample_padding"
        case midBlockScaleFactor = "mid_block_scale_factor", actFn = "act_fn", normNumGroups = "norm_num_groups"
        case normEps = "norm_eps", crossAttentionDim = "cross_attention_dim"
        case transformerLayersPerBlock = "transformer_layers_per_block"
        case reverseTransformerLayersPerBlock = "reverse_transformer_layers_per_block"
        case attentionHeadDim = "attention_head_dim", numAttentionHeads = "num_attention_heads"
        case dualCrossAttention = "dual_cross_attention", useLinearProjection = "use_linear_projection"
        case classEmbedType = "class_embed_type", additionEmbedType = "addition_embed_type"
        case additionTimeEmbedDim = "addition_time_embed_dim"
        case projectionClassEmbeddingsInputDim = "projection_class_embeddings_input_dim"
        case encoderHidDim = "encoder_hid_dim", upcastAttention = "upcast_attention"
        case resnetTimeScaleShift = "resnet_time_scale_shift", resnetOutScaleFactor = "resnet_out_scale_factor"
        case timeEmbeddingType = "time_embedding_type", timeEmbeddingDim = "time_embedding_dim"
        case timeEmbeddingActFn = "time_embedding_act_fn", timestepPostAct = "timestep_post_act"
        case timeCondProjDim = "time_cond_proj_dim", convInKernel = "conv_in_kernel", convOutKernel = "conv_out_kernel"
        case attentionType = "attention_type"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func read<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
            if let decoded = try c.decodeIfPresent(T.self, forKey: key) { value = decoded }
        }
        func readOptional<T: Decodable>(_ key: CodingKeys, _ value: inout T?) throws {
            if c.contains(key) { value = try c.decodeIfPresent(T.self, forKey: key) }
        }
        try readOptional(.sampleSize, &sampleSize)
        try read(.inChannels, &inChannels); try read(.outChannels, &outChannels)
        try read(.centerInputSample, &centerInputSample); try read(.flipSinToCos, &flipSinToCos)
        try read(.freqShift, &freqShift); try read(.downBlockTypes, &downBlockTypes)
        try readOptional(.midBlockType, &midBlockType); try read(.upBlockTypes, &upBlockTypes)
        try read(.onlyCrossAttention, &onlyCrossAttention); try read(.blockOutChannels, &blockOutChannels)
        try read(.layersPerBlock, &layersPerBlock); try read(.downsamplePadding, &downsamplePadding)
        try read(.midBlockScaleFactor, &midBlockScaleFactor); try read(.actFn, &actFn)
        try readOptional(.normNumGroups, &normNumGroups); try read(.normEps, &normEps)
        try read(.crossAttentionDim, &crossAttentionDim)
        try read(.transformerLayersPerBlock, &transformerLayersPerBlock)
        try readOptional(.reverseTransformerLayersPerBlock, &reverseTransformerLayersPerBlock)
        try readOptional(.attentionHeadDim, &attentionHeadDim)
        try readOptional(.numAttentionHeads, &numAttentionHeads)
        try read(.dualCrossAttention, &dualCrossAttention); try read(.useLinearProjection, &useLinearProjection)
        try readOptional(.classEmbedType, &classEmbedType); try readOptional(.additionEmbedType, &additionEmbedType)
        try readOptional(.additionTimeEmbedDim, &additionTimeEmbedDim)
        try readOptional(.projectionClassEmbeddingsInputDim, &projectionClassEmbeddingsInputDim)
        try readOptional(.encoderHidDim, &encoderHidDim); try read(.upcastAttention, &upcastAttention)
        try read(.resnetTimeScaleShift, &resnetTimeScaleShift); try read(.resnetOutScaleFactor, &resnetOutScaleFactor)
        try read(.timeEmbeddingType, &timeEmbeddingType); try readOptional(.timeEmbeddingDim, &timeEmbeddingDim)
        try readOptional(.timeEmbeddingActFn, &timeEmbeddingActFn); try readOptional(.timestepPostAct, &timestepPostAct)
        try readOptional(.timeCondProjDim, &timeCondProjDim)
        try read(.convInKernel, &convInKernel); try read(.convOutKernel, &convOutKernel)
        try read(.attentionType, &attentionType)
    }
}
