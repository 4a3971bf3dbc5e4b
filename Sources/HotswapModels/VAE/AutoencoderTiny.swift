// diffusers/models/autoencoders/autoencoder_tiny.py (AutoencoderTiny.decode) and autoencoders/vae.py
// (DecoderTiny, with AutoencoderTinyBlock from unets/unet_2d_blocks.py): madebyollin's TAESD, a
// small convolutional decoder that stands in for AutoencoderKL's decode as a fast preview. Only the
// decoder is built. Reads a diffusers AutoencoderTiny folder (madebyollin/taesd, taesdxl) or a
// single decoder file in either the diffusers layout (`decoder.layers.N.*`) or TAESD's original
// one (`taesd_decoder.safetensors`, as A1111 and ComfyUI load it: `N.*`, index 0 being the Clamp).
import Foundation
import HotswapCore

public struct AutoencoderTinyConfig: Decodable, Sendable, Equatable {
    public var outChannels = 3
    public var decoderBlockOutChannels: [Int] = [64, 64, 64, 64]
    public var numDecoderBlocks: [Int] = [3, 3, 3, 1]
    public var actFn = "relu"
    public var upsampleFn = "nearest"
    public var latentChannels = 4
    public var upsamplingScalingFactor = 2
    public var scalingFactor: Float = 1.0
    public var shiftFactor: Float = 0

    enum CodingKeys: String, CodingKey {
        case outChannels = "out_channels", decoderBlockOutChannels = "decoder_block_out_channels"
        case numDecoderBlocks = "num_decoder_blocks", actFn = "act_fn", upsampleFn = "upsample_fn"
        case latentChannels = "latent_channels", upsamplingScalingFactor = "upsampling_scaling_factor"
        case scalingFactor = "scaling_factor", shiftFactor = "shift_factor"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func read<T: Decodable>(_ key: CodingKeys, _ value: inout T) throws {
            if let decoded = try c.decodeIfPresent(T.self, forKey: key) { value = decoded }
        }
        try read(.outChannels, &outChannels); try read(.decoderBlockOutChannels, &decoderBlockOutChannels)
        try read(.numDecoderBlocks, &numDecoderBlocks); try read(.actFn, &actFn); try read(.upsampleFn, &upsampleFn)
        try read(.latentChannels, &latentChannels); try read(.upsamplingScalingFactor, &upsamplingScalingFactor)
        try read(.scalingFactor, &scalingFactor); try read(.shiftFactor, &shiftFactor)
    }
}

/// What the pipeline turns latents into pixels with: the model's AutoencoderKL, or a stand-in (TAESD).
public protocol LatentDecoder: AnyObject {
    var latentChannels: Int { get }
    /// How many times larger the image is than the latent, per side.
    var upscale: Int { get }
    /// diffusers' pipelines decode `latents / scaling_factor`.
    var scalingFactor: Float { get }
    /// [batch, latent, h, w], already divided by scalingFactor -> [batch, 3, h * upscale, w * upscale], about [-1, 1].
    func decode(_ latents: Tensor) -> Tensor
}

extension AutoencoderKL: LatentDecoder {
    public var latentChannels: Int { config.latentChannels }
    public var upscale: Int { config.scaleFactor }
    public var scalingFactor: Float { config.scalingFactor }
}

public final class AutoencoderTiny: LatentDecoder {
    public let config: AutoencoderTinyConfig
    /// Where it was read from (for the infotext's "VAE" field and logs).
    public let url: URL
    let convIn: Conv2d
    let levels: [(blocks: [(Conv2d, Conv2d, Conv2d)], upsample: Bool, conv: Conv2d)]

    public var latentChannels: Int { config.latentChannels }
    public var upscale: Int {
        (0..<(config.numDecoderBlocks.count - 1)).reduce(1) { r, _ in r * config.upsamplingScalingFactor }
    }
    public var scalingFactor: Float { config.scalingFactor }
    /// The name A1111 writes in the infotext's "VAE" field: the file or folder name without extension.
    public var name: String { url.deletingPathExtension().lastPathComponent }

    /// A diffusers AutoencoderTiny folder (config.json + diffusion_pytorch_model.safetensors) or one
    /// decoder `.safetensors` file (its config read from the tensors).
    public static func load(_ url: URL) throws -> AutoencoderTiny {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw ModelLoadingError.missingFile(url)
        }
        if isDirectory.boolValue {
            let config = try loadConfig(AutoencoderTinyConfig.self, from: url.appendingPathComponent("config.json"))
            let weights = try WeightFiles.load(directory: url, baseName: "diffusion_pytorch_model")
            return try AutoencoderTiny(config: config, weights: weights, url: url)
        }
        let weights = try diffusersNames(SafeTensorsFile(url: url).allTensors(), file: url)
        return try AutoencoderTiny(config: inferConfig(weights, file: url), weights: weights, url: url)
    }

    /// TAESD's original keys (`1.weight`, `3.conv.0.weight`: the decoder Sequential with a Clamp at
    /// index 0) renamed to diffusers' (`decoder.layers.0.weight`, ...); diffusers' names kept.
    static func diffusersNames(_ weights: [String: Tensor], file: URL) throws -> [String: Tensor] {
        if weights.keys.contains(where: { $0.hasPrefix("decoder.layers.") }) { return weights }
        var renamed: [String: Tensor] = [:]
        for (key, tensor) in weights {
            let parts = key.split(separator: ".", maxSplits: 1)
            guard parts.count == 2, let index = Int(parts[0]), index >= 1 else {
                throw notTAESD(file, "key '\(key)'")
            }
            renamed["decoder.layers.\(index - 1).\(parts[1])"] = tensor
        }
        return renamed
    }

    static func notTAESD(_ file: URL, _ detail: String) -> ModelLoadingError {
        .unsupportedConfig(component: "vae decoder", field: file.lastPathComponent,
                           value: "not a TAESD decoder (\(detail)); expected keys like decoder.layers.0.weight (diffusers AutoencoderTiny) or 1.weight (taesd_decoder.safetensors)")
    }

    /// The config a decoder file implies: channels from the first convolution, then per level the
    /// blocks up to the next convolution (an upsample, which has no weights, sits before each
    /// convolution but the last).
    static func inferConfig(_ weights: [String: Tensor], file: URL) throws -> AutoencoderTinyConfig {
        func has(_ index: Int, _ suffix: String) -> Bool { weights["decoder.layers.\(index).\(suffix)"] != nil }
        guard let first = weights["decoder.layers.0.weight"], first.rank == 4, first.shape[0] > 0, first.shape[1] > 0 else {
            throw notTAESD(file, "no 4-D first convolution")
        }
        var config = AutoencoderTinyConfig()
        config.latentChannels = first.shape[1]
        var levels: [Int] = []
        var index = 2  // 0: convolution, 1: activation
        while true {
            var blocks = 0
            while has(index, "conv.0.weight") { blocks += 1; index += 1 }
            levels.append(blocks)
            if let last = weights["decoder.layers.\(index).weight"] {
                guard last.rank == 4, last.shape[0] > 0 else { throw notTAESD(file, "final convolution \(last.shape)") }
                config.outChannels = last.shape[0]
                break
            }
            guard has(index + 1, "weight"), levels.count < 16 else {
                throw notTAESD(file, "nothing at layer \(index + 1) after \(levels.count) level(s)")
            }
            index += 2
        }
        config.numDecoderBlocks = levels
        config.decoderBlockOutChannels = Array(repeating: first.shape[0], count: levels.count)
        return config
    }

    public init(config: AutoencoderTinyConfig, weights: [String: Tensor], url: URL) throws {
        func unsupported(_ field: String, _ value: String) -> ModelLoadingError {
            .unsupportedConfig(component: "vae decoder", field: field, value: value)
        }
        let c = config
        if c.actFn != "relu" { throw unsupported("act_fn", c.actFn) }
        if c.upsampleFn != "nearest" { throw unsupported("upsample_fn", c.upsampleFn) }
        if c.shiftFactor != 0 { throw unsupported("shift_factor", "\(c.shiftFactor)") }
        guard !c.decoderBlockOutChannels.isEmpty, c.decoderBlockOutChannels.count == c.numDecoderBlocks.count,
              c.decoderBlockOutChannels.count <= 16 else {
            throw unsupported("num_decoder_blocks", "\(c.numDecoderBlocks) for decoder_block_out_channels \(c.decoderBlockOutChannels)")
        }
        // DecoderTiny's level convolutions keep the channel count, so diffusers builds only equal widths.
        guard let width = c.decoderBlockOutChannels.first, width > 0, c.decoderBlockOutChannels.allSatisfy({ $0 == width }) else {
            throw unsupported("decoder_block_out_channels", "\(c.decoderBlockOutChannels) (DecoderTiny needs one positive width)")
        }
        guard c.latentChannels > 0, c.outChannels > 0, c.numDecoderBlocks.allSatisfy({ (0...64).contains($0) }),
              (1...8).contains(c.upsamplingScalingFactor), c.scalingFactor.isFinite, c.scalingFactor != 0 else {
            throw unsupported("config", "latent_channels \(c.latentChannels), out_channels \(c.outChannels), num_decoder_blocks \(c.numDecoderBlocks), upsampling_scaling_factor \(c.upsamplingScalingFactor), scaling_factor \(c.scalingFactor)")
        }
        self.config = config
        self.url = url
        let p = Parameters(component: "vae decoder", tensors: weights)
        p.ignore(prefix: "encoder.")
        let layers = ModulePath()("decoder")("layers")
        convIn = Conv2d(p, layers(0), inChannels: c.latentChannels, outChannels: width, kernelSize: 3, padding: 1)
        var index = 2
        var built: [([(Conv2d, Conv2d, Conv2d)], Bool, Conv2d)] = []
        for (level, count) in c.numDecoderBlocks.enumerated() {
            let last = level == c.numDecoderBlocks.count - 1
            var blocks: [(Conv2d, Conv2d, Conv2d)] = []
            for _ in 0..<count {
                let conv = layers(index)("conv")
                blocks.append((Conv2d(p, conv(0), inChannels: width, outChannels: width, kernelSize: 3, padding: 1),
                               Conv2d(p, conv(2), inChannels: width, outChannels: width, kernelSize: 3, padding: 1),
                               Conv2d(p, conv(4), inChannels: width, outChannels: width, kernelSize: 3, padding: 1)))
                index += 1
            }
            if !last { index += 1 }  // nn.Upsample
            let conv = Conv2d(p, layers(index), inChannels: width, outChannels: last ? c.outChannels : width,
                              kernelSize: 3, padding: 1, bias: last)
            index += 1
            built.append((blocks, !last, conv))
        }
        levels = built.map { (blocks: $0.0, upsample: $0.1, conv: $0.2) }
        try p.finish()
    }

    /// DecoderTiny.forward then `x * 2 - 1`: tanh(x / 3) * 3, then convolutions with ReLU, residual
    /// blocks and nearest upsampling.
    public func decode(_ latents: Tensor) -> Tensor {
        let clamped = Tensor(uninitialized: latents.shape)
        for i in 0..<latents.count { clamped.data[i] = Foundation.tanh(latents.data[i] / 3) * 3 }
        var h = convIn(clamped)
        Self.relu(h)
        for level in levels {
            for (conv0, conv2, conv4) in level.blocks {
                let a = conv0(h)
                Self.relu(a)
                let b = conv2(a)
                Self.relu(b)
                let y = conv4(b)
                y.addInPlace(h)  // skip: identity (equal widths)
                Self.relu(y)
                h = y
            }
            if level.upsample {
                let factor = config.upsamplingScalingFactor
                h = Layout.resizeNearest(h, height: h.shape[2] * factor, width: h.shape[3] * factor)
            }
            h = level.conv(h)
        }
        for i in 0..<h.count { h.data[i] = h.data[i] * 2 - 1 }
        return h
    }

    static func relu(_ x: Tensor) {
        let p = x.data
        for i in 0..<x.count { p[i] = max(p[i], 0) }
    }
}
