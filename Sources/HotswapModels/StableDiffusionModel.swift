// A Stable Diffusion model folder in diffusers layout (what StableDiffusionPipeline.from_pretrained
// reads): model_index.json, tokenizer/, text_encoder/, unet/, vae/, scheduler/.
import Foundation
import HotswapModels
import HotswapCore

public final class StableDiffusionModel {
    public let directory: URL
    public let name: String
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    public let schedulerConfig: SchedulerConfig

    /// Loads every component strictly: a missing file, a config Hotswap cannot run, or weights
    /// that do not match their config is an error naming the component and the problem.
    public init(directory: URL) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ModelLoadingError.missingFile(directory)
        }
        self.directory = directory
        name = directory.standardizedFileURL.lastPathComponent
        let index = directory.appendingPathComponent("model_index.json")
        guard fm.fileExists(atPath: index.path) else { throw ModelLoadingError.missingFile(index) }
        struct ModelIndex: Decodable { let _class_name: String? }
        let className = try loadConfig(ModelIndex.self, from: index)._class_name
        if let className, !["StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"].contains(className) {
            throw ModelLoadingError.unsupportedConfig(component: "model_index.json", field: "_class_name", value: className)
        }

        tokenizer = try CLIPTokenizer(directory: directory.appendingPathComponent("tokenizer"))
        let textDir = directory.appendingPathComponent("text_encoder")
        let textConfig = try loadConfig(CLIPTextConfig.self, from: textDir.appendingPathComponent("config.json"))
        textEncoder = try CLIPTextModel(config: textConfig, weights: WeightFiles.load(directory: textDir, baseName: "model"))
        let unetDir = directory.appendingPathComponent("unet")
        let unetConfig = try loadConfig(UNet2DConditionConfig.self, from: unetDir.appendingPathComponent("config.json"))
        unet = try UNet2DConditionModel(config: unetConfig,
                                        weights: WeightFiles.load(directory: unetDir, baseName: "diffusion_pytorch_model"))
        let vaeDir = directory.appendingPathComponent("vae")
        let vaeConfig = try loadConfig(AutoencoderKLConfig.self, from: vaeDir.appendingPathComponent("config.json"))
        vae = try AutoencoderKL(config: vaeConfig,
                                weights: WeightFiles.load(directory: vaeDir, baseName: "diffusion_pytorch_model"))
        let schedulerFile = directory.appendingPathComponent("scheduler/scheduler_config.json")
        schedulerConfig = try loadConfig(SchedulerConfig.self, from: schedulerFile)

        if unetConfig.crossAttentionDim.expanded(1)[0] != textConfig.hiddenSize {
            throw ModelLoadingError.unsupportedConfig(
                component: "unet", field: "cross_attention_dim",
                value: "\(unetConfig.crossAttentionDim.expanded(1)[0]) does not match the text encoder's hidden_size \(textConfig.hiddenSize)")
        }
        if unetConfig.inChannels != vaeConfig.latentChannels {
            throw ModelLoadingError.unsupportedConfig(
                component: "unet", field: "in_channels",
                value: "\(unetConfig.inChannels) does not match the VAE's latent_channels \(vaeConfig.latentChannels)")
        }
    }

    /// diffusers' vae_scale_factor: 2^(len(vae.block_out_channels) - 1).
    public var vaeScaleFactor: Int { vae.config.scaleFactor }

    /// diffusers' default size: unet.config.sample_size * vae_scale_factor (512 for SD1.5).
    public var defaultImageSize: Int { (unet.config.sampleSize ?? 64) * vaeScaleFactor }
}
