// A Stable Diffusion model: a folder in diffusers layout (what StableDiffusionPipeline.from_pretrained
// reads: model_index.json, tokenizer/, text_encoder/, unet/, vae/, scheduler/) or an original-format
// single file (SingleFile/).
import Foundation
import HotswapModels
import HotswapCore

public final class StableDiffusionModel {
    /// The folder, or the single file, the model was read from.
    public let directory: URL
    public let name: String
    /// The family a single-file checkpoint was detected as (nil for a diffusers folder).
    public let family: ModelFamily?
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    /// What images are decoded with: `vae`, unless `useDecoder` installed a stand-in (TAESD).
    public private(set) var decoder: any LatentDecoder
    public let schedulerConfig: SchedulerConfig
    /// SDXL's second text encoder (CLIPTextModelWithProjection) and its tokenizer; nil for SD1.x/2.x.
    public let secondText: (tokenizer: CLIPTokenizer, encoder: CLIPTextModel)?
    /// StableDiffusionXLPipeline's force_zeros_for_empty_prompt: with guidance and no negative
    /// prompt, the negative embeddings are zeros rather than the encoding of "".
    public let forceZerosForEmptyPrompt: Bool

    public var isXL: Bool { secondText != nil }

    /// SD1.x, SD2.x or SDXL: a single file's detected family, else what the folder's encoders say
    /// (two: SDXL; OpenCLIP's gelu: SD2.x; CLIP's quick_gelu: SD1.x). Recorded in infotext and timings.
    public var familyLabel: String {
        if let family { return family.rawValue }
        if isXL { return ModelFamily.sdxl.rawValue }
        return textEncoder.config.hiddenAct == "gelu" ? ModelFamily.sd2.rawValue : ModelFamily.sd1.rawValue
    }

    /// Loads every component strictly: a missing file, a config Hotswap cannot run, or weights
    /// that do not match their config is an error naming the component and the problem.
    public convenience init(directory: URL) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ModelLoadingError.missingFile(directory)
        }
        let index = directory.appendingPathComponent("model_index.json")
        guard fm.fileExists(atPath: index.path) else { throw ModelLoadingError.missingFile(index) }
        struct ModelIndex: Decodable { let _class_name: String?; let force_zeros_for_empty_prompt: Bool? }
        let modelIndex = try loadConfig(ModelIndex.self, from: index)
        let className = modelIndex._class_name
        let xlClasses = ["StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"]
        if let className, !(["StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"] + xlClasses).contains(className) {
            throw ModelLoadingError.unsupportedConfig(component: "model_index.json", field: "_class_name", value: className)
        }
        // SDXL: text_encoder_2 + tokenizer_2 (a refiner, which has only these, is refused by its UNet).
        let secondDir = directory.appendingPathComponent("text_encoder_2")
        let isXL = className.map(xlClasses.contains) ?? fm.fileExists(atPath: secondDir.path)

        let textDir = directory.appendingPathComponent("text_encoder")
        let unetDir = directory.appendingPathComponent("unet")
        let vaeDir = directory.appendingPathComponent("vae")
        try self.init(
            source: directory, name: directory.standardizedFileURL.lastPathComponent, family: nil,
            tokenizer: CLIPTokenizer(directory: directory.appendingPathComponent("tokenizer")),
            second: isXL ? (CLIPTokenizer(directory: directory.appendingPathComponent("tokenizer_2")),
                            loadConfig(CLIPTextConfig.self, from: secondDir.appendingPathComponent("config.json")),
                            { try WeightFiles.load(directory: secondDir, baseName: "model") }) : nil,
            forceZerosForEmptyPrompt: isXL && (modelIndex.force_zeros_for_empty_prompt ?? true),
            textConfig: loadConfig(CLIPTextConfig.self, from: textDir.appendingPathComponent("config.json")),
            textWeights: { try WeightFiles.load(directory: textDir, baseName: "model") },
            unetConfig: loadConfig(UNet2DConditionConfig.self, from: unetDir.appendingPathComponent("config.json")),
            unetWeights: { try WeightFiles.load(directory: unetDir, baseName: "diffusion_pytorch_model") },
            vaeConfig: loadConfig(AutoencoderKLConfig.self, from: vaeDir.appendingPathComponent("config.json")),
            vaeWeights: { try WeightFiles.load(directory: vaeDir, baseName: "diffusion_pytorch_model") },
            schedulerConfig: loadConfig(SchedulerConfig.self, from: directory.appendingPathComponent("scheduler/scheduler_config.json")))
    }

    /// An original-format single-file checkpoint (SD1.x / SD2.x / SDXL), read without converting it to disk.
    public convenience init(checkpoint: SingleFileCheckpoint) throws {
        let file = checkpoint.url
        func decode<Config: Decodable>(_ type: Config.Type, _ config: JSONConfig, _ component: String) throws -> Config {
            let label = URL(fileURLWithPath: "\(file.path) (\(checkpoint.family.rawValue) \(component) config)")
            do {
                return try configDecoder().decode(Config.self, from: config.data())
            } catch let error as DecodingError {
                throw ModelLoadingError.malformedConfig(label, describe(error))
            } catch {
                throw ModelLoadingError.malformedConfig(label, "\(error)")
            }
        }
        try self.init(
            source: file, name: file.deletingPathExtension().lastPathComponent, family: checkpoint.family,
            tokenizer: CLIPTokenizer(directory: checkpoint.tokenizerDirectory, vocabularyDirectory: checkpoint.vocabularyDirectory),
            second: checkpoint.textEncoder2.map { second in
                (try CLIPTokenizer(directory: checkpoint.tokenizer2Directory!, vocabularyDirectory: checkpoint.vocabulary2Directory),
                 try decode(CLIPTextConfig.self, second.config, "text_encoder_2"), { second.weights })
            },
            forceZerosForEmptyPrompt: checkpoint.family == .sdxl,
            textConfig: decode(CLIPTextConfig.self, checkpoint.textEncoder.config, "text_encoder"),
            textWeights: { checkpoint.textEncoder.weights },
            unetConfig: decode(UNet2DConditionConfig.self, checkpoint.unet.config, "unet"),
            unetWeights: { checkpoint.unet.weights },
            vaeConfig: decode(AutoencoderKLConfig.self, checkpoint.vae.config, "vae"),
            vaeWeights: { checkpoint.vae.weights },
            schedulerConfig: decode(SchedulerConfig.self, checkpoint.scheduler, "scheduler"))
    }

    /// A diffusers folder or, for a `.safetensors` file, a single-file checkpoint; decoding with the
    /// TAESD at `vaeDecoder` (a folder or a decoder file) when one is given.
    public static func load(_ url: URL, singleFile options: SingleFileOptions = .init(),
                            vaeDecoder: URL? = nil) throws -> StableDiffusionModel {
        var isDirectory: ObjCBool = false
        let model: StableDiffusionModel
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue {
            model = try StableDiffusionModel(checkpoint: SingleFileCheckpoint(url: url, options: options))
        } else {
            model = try StableDiffusionModel(directory: url)
        }
        if let vaeDecoder { try model.useDecoder(AutoencoderTiny.load(vaeDecoder)) }
        return model
    }

    /// Builds every component (weights are fetched once each, when its config is known to be valid)
    /// and checks that they fit together.
    init(source: URL, name: String, family: ModelFamily?, tokenizer: CLIPTokenizer,
         second: (tokenizer: CLIPTokenizer, config: CLIPTextConfig, weights: () throws -> [String: Tensor])?,
         forceZerosForEmptyPrompt: Bool,
         textConfig: CLIPTextConfig, textWeights: () throws -> [String: Tensor],
         unetConfig: UNet2DConditionConfig, unetWeights: () throws -> [String: Tensor],
         vaeConfig: AutoencoderKLConfig, vaeWeights: () throws -> [String: Tensor],
         schedulerConfig: SchedulerConfig) throws {
        directory = source
        self.name = name
        self.family = family
        self.tokenizer = tokenizer
        textEncoder = try CLIPTextModel(config: textConfig, weights: textWeights())
        if let second {
            guard second.config.withProjection else {
                throw ModelLoadingError.unsupportedConfig(component: "text_encoder_2", field: "architectures",
                                                          value: "\(second.config.architectures ?? []) (SDXL needs CLIPTextModelWithProjection)")
            }
            secondText = (second.tokenizer, try CLIPTextModel(config: second.config, weights: second.weights(), component: "text_encoder_2"))
        } else {
            secondText = nil
        }
        self.forceZerosForEmptyPrompt = forceZerosForEmptyPrompt
        unet = try UNet2DConditionModel(config: unetConfig, weights: unetWeights())
        vae = try AutoencoderKL(config: vaeConfig, weights: vaeWeights())
        decoder = vae
        self.schedulerConfig = schedulerConfig

        // The tokenizers pad to model_max_length: the encoders must have that many positions.
        for (component, tokenizer, config) in [("text_encoder", tokenizer, textConfig)] + (second.map { [("text_encoder_2", $0.tokenizer, $0.config)] } ?? [])
            where tokenizer.maxLength > config.maxPositionEmbeddings {
            throw ModelLoadingError.unsupportedConfig(
                component: component, field: "max_position_embeddings",
                value: "\(config.maxPositionEmbeddings) is less than the tokenizer's model_max_length \(tokenizer.maxLength)")
        }
        // SDXL's context is both encoders' states side by side; its add_embedding takes the pooled
        // projection and six sinusoidal time ids.
        let contextWidth = textConfig.hiddenSize + (second?.config.hiddenSize ?? 0)
        if unetConfig.crossAttentionDim.expanded(1)[0] != contextWidth {
            throw ModelLoadingError.unsupportedConfig(
                component: "unet", field: "cross_attention_dim",
                value: "\(unetConfig.crossAttentionDim.expanded(1)[0]) does not match the text encoders' hidden_size \(contextWidth)")
        }
        if unet.takesAddedConditions != (second != nil) {
            throw ModelLoadingError.unsupportedConfig(
                component: "unet", field: "addition_embed_type",
                value: "\(unetConfig.additionEmbedType ?? "null") with \(second == nil ? "one text encoder" : "two text encoders") (SDXL needs text_time and two)")
        }
        if let second, let dim = unetConfig.additionTimeEmbedDim,
           unetConfig.projectionClassEmbeddingsInputDim != (second.config.projectionDim ?? 0) + 6 * dim {
            throw ModelLoadingError.unsupportedConfig(
                component: "unet", field: "projection_class_embeddings_input_dim",
                value: "\(unetConfig.projectionClassEmbeddingsInputDim ?? 0) is not text_encoder_2's projection_dim \(second.config.projectionDim ?? 0) + 6 x \(dim)")
        }
        if unetConfig.inChannels != vaeConfig.latentChannels {
            throw ModelLoadingError.unsupportedConfig(
                component: "unet", field: "in_channels",
                value: "\(unetConfig.inChannels) does not match the VAE's latent_channels \(vaeConfig.latentChannels)")
        }
    }

    /// The components a render leaves idle for a while.
    public enum IdleComponent {
        case textEncoders, unet
        /// The checkpoint weights of UNet layers whose forward runs on a fused LoRA copy: idle
        /// until the next swap (SDXL with a rank-16 attention LoRA: 4.4 GB of 10).
        case unetFusedBases
    }

    /// Hands the pages of `component`'s weights that borrow a memory-mapped F32 file back to the
    /// kernel (see `Tuning.releaseIdleWeightPages`): they are clean page cache, read back by page
    /// faults at the next use, so resident memory holds only what the current phase reads (SDXL
    /// 1024x1024: the text encoders' 3.3 GB during denoising, the UNet's 10 GB during the decode).
    /// Fused LoRA buffers and converted (F16/BF16) weights are anonymous memory and stay.
    public func releaseIdlePages(_ component: IdleComponent) {
        guard Tuning.current.releaseIdleWeightPages else { return }
        // Base weights only: a layer's `weight` is its base, or a fused LoRA buffer (anonymous memory).
        switch component {
        case .textEncoders:
            for encoder in [textEncoder] + (secondText.map { [$0.encoder] } ?? []) {
                for linear in encoder.linears.values { linear.baseWeight.storage.releaseResidentPages() }
            }
        case .unet, .unetFusedBases:
            let all = component == .unet
            for linear in unet.linears.values where all || linear.weight.storage !== linear.baseWeight.storage {
                linear.baseWeight.storage.releaseResidentPages()
            }
            for conv in unet.convolutions.values where all || conv.weight.storage !== conv.baseWeight.storage {
                conv.baseWeight.storage.releaseResidentPages()
            }
        }
    }

    /// Decodes images with `tiny` (TAESD) instead of the VAE, as diffusers' pipelines do when given
    /// `vae=AutoencoderTiny...`; call before the model is shared. Its latent channels and upscaling
    /// must be the VAE's.
    public func useDecoder(_ tiny: AutoencoderTiny) throws {
        guard tiny.latentChannels == vae.config.latentChannels, tiny.upscale == vaeScaleFactor else {
            throw ModelLoadingError.unsupportedConfig(
                component: "vae decoder", field: tiny.url.lastPathComponent,
                value: "decodes \(tiny.latentChannels)-channel latents \(tiny.upscale)x, but this model's VAE decodes \(vae.config.latentChannels)-channel latents \(vaeScaleFactor)x")
        }
        decoder = tiny
    }

    /// diffusers' vae_scale_factor: 2^(len(vae.block_out_channels) - 1).
    public var vaeScaleFactor: Int { vae.config.scaleFactor }

    /// diffusers' default size: unet.config.sample_size * vae_scale_factor (512 for SD1.5).
    public var defaultImageSize: Int { (unet.config.sampleSize ?? 64) * vaeScaleFactor }
}
