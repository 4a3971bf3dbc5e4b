// transformers/models/clip/modeling_clip.py: CLIPTextModel (CLIPTextTransformer with causal
// self-attention, pre-LayerNorm encoder layers, final_layer_norm). Weights load in both
// spellings: transformers 4 (`text_model.` prefix, nearly every SD folder) and 5 (no prefix).
import HotswapCore

public struct CLIPTextConfig: Decodable, Sendable {
    public var vocabSize: Int = 49408
    public var hiddenSize: Int = 512
    public var intermediateSize: Int = 2048
    public var numHiddenLayers: Int = 12
    public var numAttentionHeads: Int = 8
    public var maxPositionEmbeddings: Int = 77
    public var hiddenAct: String = "quick_gelu"
    public var layerNormEps: Float = 1e-5
    public var projectionDim: Int?
    public var eosTokenId: Int = 2
    /// ["CLIPTextModelWithProjection"] for SDXL's text_encoder_2 (a text_projection after pooling).
    public var architectures: [String]?

    public var withProjection: Bool { architectures?.contains("CLIPTextModelWithProjection") == true }

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case maxPositionEmbeddings = "max_position_embeddings", hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps"
        case projectionDim = "projection_dim", eosTokenId = "eos_token_id", architectures
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func read<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
            if let decoded = try c.decodeIfPresent(T.self, forKey: key) { value = decoded }
        }
        try read(.vocabSize, &vocabSize); try read(.hiddenSize, &hiddenSize)
        try read(.intermediateSize, &intermediateSize); try read(.numHiddenLayers, &numHiddenLayers)
        try read(.numAttentionHeads, &numAttentionHeads); try read(.maxPositionEmbeddings, &maxPositionEmbeddings)
        try read(.hiddenAct, &hiddenAct); try read(.layerNormEps, &layerNormEps)
        if c.contains(.projectionDim) { projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim) }
        try read(.eosTokenId, &eosTokenId)
        if c.contains(.architectures) { architectures = try c.decodeIfPresent([String].self, forKey: .architectures) }
    }
}

public final class CLIPTextModel {
    public let config: CLIPTextConfig
    let activation: Activation
    let tokenEmbedding: Tensor      // [vocab, hidden]
    let positionEmbedding: Tensor   // [positions, hidden]
    let layers: [CLIPEncoderLayer]
    let finalLayerNorm: LayerNorm
    /// CLIPTextModelWithProjection's text_projection (no bias), applied to the pooled output.
    let textProjection: Linear?
    public let linears: [String: Linear]

    /// `component`: the folder name in errors (text_encoder, text_encoder_2).
    public init(config: CLIPTextConfig, weights: [String: Tensor], component: String = "text_encoder") throws {
        guard let activation = Activation(configName: config.hiddenAct) else {
            throw ModelLoadingError.unsupportedConfig(component: "text_encoder", field: "hidden_act", value: config.hiddenAct)
        }
        guard config.hiddenSize % config.numAttentionHeads == 0 else {
            throw ModelLoadingError.unsupportedConfig(component: "text_encoder", field: "num_attention_heads",
                                                      value: "\(config.numAttentionHeads) does not divide hidden_size \(config.hiddenSize)")
        }
        self.config = config
        self.activation = activation
        var canonical: [String: Tensor] = [:]
        for (name, tensor) in weights {
            canonical[name.hasPrefix("text_model.") ? String(name.dropFirst("text_model.".count)) : name] = tensor
        }
        // position_ids is a buffer some transformers versions saved; it holds 0..<77 and is not a weight.
        canonical.removeValue(forKey: "embeddings.position_ids")
        let p = Parameters(component: component, tensors: canonical)
        let root = ModulePath()
        let hidden = config.hiddenSize
        tokenEmbedding = p.take("embeddings.token_embedding.weight", shape: [config.vocabSize, hidden])
        positionEmbedding = p.take("embeddings.position_embedding.weight", shape: [config.maxPositionEmbeddings, hidden])
        layers = (0..<config.numHiddenLayers).map {
            CLIPEncoderLayer(p, root("encoder")("layers", $0), config: config, activation: activation)
        }
        finalLayerNorm = LayerNorm(p, root("final_layer_norm"), features: hidden, epsilon: config.layerNormEps)
        if config.withProjection {
            guard let projection = config.projectionDim, projection > 0 else {
                throw ModelLoadingError.unsupportedConfig(component: "text_encoder", field: "projection_dim", value: "null")
            }
            textProjection = Linear(p, root("text_projection"), inFeatures: hidden, outFeatures: projection, bias: false)
        } else {
            textProjection = nil
        }
        try p.finish()
        linears = p.linears
    }

    /// Token ids [batch][tokens] -> hidden states [batch, tokens, hidden].
    /// `clipSkip` as diffusers defines it: nil (or 0) uses the last layer; N uses the output of
    /// layer count - N. Either way the final layer norm is applied.
    public func callAsFunction(_ ids: [[Int]], clipSkip: Int? = nil) -> Tensor {
        var h = embed(ids)
        let layerCount = layers.count - min(max(clipSkip ?? 0, 0), layers.count)
        for layer in layers.prefix(layerCount) { h = layer(h) }
        return finalLayerNorm(h)
    }

    /// What SDXL's encode_prompt takes: `hidden_states[-(skip + 2)]` (the output of layer
    /// count - skip - 1, without the final layer norm) and, for a model with projection, the pooled
    /// output (final-normed state at the end-of-text token, projected) [batch, projection_dim].
    public func penultimateAndPooled(_ ids: [[Int]], skip: Int = 0) -> (hidden: Tensor, pooled: Tensor?) {
        var h = embed(ids)
        let captureAfter = max(layers.count - max(skip, 0) - 1, 0)
        var captured = h
        for (i, layer) in layers.enumerated() {
            if i == captureAfter { captured = h }
            if i >= captureAfter && textProjection == nil { break }  // nothing after it is used
            // The pooled output reads the last layer at the end-of-text tokens only.
            h = i == layers.count - 1 ? layer(h, onlyAt: eosPositions(ids)) : layer(h)
        }
        guard let textProjection else { return (captured, nil) }
        if layers.isEmpty {
            let (batch, tokens, hidden) = (ids.count, ids[0].count, config.hiddenSize)
            let rows = Tensor(uninitialized: [batch, hidden])
            for (b, eos) in eosPositions(ids).enumerated() {
                (rows.data + b * hidden).update(from: h.data + (b * tokens + eos) * hidden, count: hidden)
            }
            h = rows
        }
        return (captured, textProjection(finalLayerNorm(h)))
    }

    /// Per batch item, the end-of-text position the pooled output reads. transformers: argmax(ids)
    /// when eos_token_id == 2 (legacy configs, where <|endoftext|> has the largest id), else the
    /// first eos_token_id.
    func eosPositions(_ ids: [[Int]]) -> [Int] {
        ids.map { row in
            config.eosTokenId == 2
                ? row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) } ?? 0
                : row.firstIndex(of: config.eosTokenId) ?? 0
        }
    }

    /// Token and position embeddings [batch, tokens, hidden].
    func embed(_ ids: [[Int]]) -> Tensor {
        let batch = ids.count, tokens = ids[0].count, hidden = config.hiddenSize
        precondition(tokens <= config.maxPositionEmbeddings, "text encoder: \(tokens) tokens > \(config.maxPositionEmbeddings)")
        let h = Tensor(uninitialized: [batch, tokens, hidden])
        for b in 0..<batch {
            for t in 0..<tokens {
                let id = min(max(ids[b][t], 0), config.vocabSize - 1)
                let row = h.data + (b * tokens + t) * hidden
                row.update(from: tokenEmbedding.data + id * hidden, count: hidden)
                Elementwise.add(positionEmbedding.data + t * hidden, into: row, count: hidden)
            }
        }
        return h
    }
}

final class CLIPEncoderLayer {
    let layerNorm1: LayerNorm, layerNorm2: LayerNorm
    let qProj: Linear, kProj: Linear, vProj: Linear, outProj: Linear
    let fc1: Linear, fc2: Linear
    let heads: Int
    let activation: Activation

    init(_ p: Parameters, _ path: ModulePath, config: CLIPTextConfig, activation: Activation) {
        let hidden = config.hiddenSize
        heads = config.numAttentionHeads
        self.activation = activation
        layerNorm1 = LayerNorm(p, path("layer_norm1"), features: hidden, epsilon: config.layerNormEps)
        let attention = path("self_attn")
        qProj = Linear(p, attention("q_proj"), inFeatures: hidden, outFeatures: hidden)
        kProj = Linear(p, attention("k_proj"), inFeatures: hidden, outFeatures: hidden)
        vProj = Linear(p, attention("v_proj"), inFeatures: hidden, outFeatures: hidden)
        outProj = Linear(p, attention("out_proj"), inFeatures: hidden, outFeatures: hidden)
        layerNorm2 = LayerNorm(p, path("layer_norm2"), features: hidden, epsilon: config.layerNormEps)
        fc1 = Linear(p, path("mlp")("fc1"), inFeatures: hidden, outFeatures: config.intermediateSize)
        fc2 = Linear(p, path("mlp")("fc2"), inFeatures: config.intermediateSize, outFeatures: hidden)
    }

    /// The layer's output at one position per batch item, [batch, hidden], for a last layer read
    /// only there (the pooled output): keys and values from every position up to it (the mask is
    /// causal), everything else for that row alone. bigG: ~2% of the encoder's work saved.
    func callAsFunction(_ x: Tensor, onlyAt positions: [Int]) -> Tensor {
        let (batch, tokens, hidden) = (x.shape[0], x.shape[1], x.shape[2])
        let normed = layerNorm1(x)
        let (keys, values) = (kProj(normed), vProj(normed))
        let (rows, residual) = (Tensor(uninitialized: [batch, 1, hidden]), Tensor(uninitialized: [batch, 1, hidden]))
        for (b, p) in positions.enumerated() {
            (rows.data + b * hidden).update(from: normed.data + (b * tokens + p) * hidden, count: hidden)
            (residual.data + b * hidden).update(from: x.data + (b * tokens + p) * hidden, count: hidden)
        }
        let queries = qProj(rows)
        let attended = Tensor(uninitialized: [batch, 1, hidden])
        for (b, p) in positions.enumerated() {
            // One query at position p sees keys 0...p: the causal row, unmasked.
            let visible = p + 1
            let (k, v, q) = (Tensor(uninitialized: [1, visible, hidden]), Tensor(uninitialized: [1, visible, hidden]),
                             Tensor(uninitialized: [1, 1, hidden]))
            k.data.update(from: keys.data + b * tokens * hidden, count: visible * hidden)
            v.data.update(from: values.data + b * tokens * hidden, count: visible * hidden)
            q.data.update(from: queries.data + b * hidden, count: hidden)
            let a = Attention.scaledDotProduct(query: q, key: k, value: v, heads: heads)
            (attended.data + b * hidden).update(from: a.data, count: hidden)
        }
        return outputs(attended: attended, residual: residual).reshaped([batch, hidden])
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let normed = layerNorm1(x)
        let attended = Attention.scaledDotProduct(query: qProj(normed), key: kProj(normed), value: vProj(normed),
                                                  heads: heads, causal: true)
        return outputs(attended: attended, residual: x)
    }

    /// out_proj + residual, then the MLP block with its residual.
    private func outputs(attended: Tensor, residual: Tensor) -> Tensor {
        let h = outProj(attended)
        h.addInPlace(residual)
        let inner = fc1(layerNorm2(h))
        activation.apply(inner.data, count: inner.count)
        let out = fc2(inner)
        out.addInPlace(h)
        return out
    }
}
