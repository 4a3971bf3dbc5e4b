// diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py: StableDiffusionPipeline.__call__
// for txt2img: encode_prompt (with its clip_skip quirk), prepare_latents, the denoising loop with
// classifier-free guidance, VAE decode and postprocessing to 8-bit RGB. For SDXL folders, the same
// loop with pipeline_stable_diffusion_xl.py's encode_prompt (two encoders, penultimate states,
// pooled projection, force_zeros_for_empty_prompt) and micro-conditioning (_get_add_time_ids).
import Foundation
import HotswapCore
import HotswapModels
import HotswapStore

/// The image came out with NaN or infinite values (non-finite weights in the model or an adapter):
/// an error of the render, never a crash.
public struct NonFiniteImageError: Error, CustomStringConvertible {
    public init() {}
    public var description: String {
        "the decoded image holds NaN or infinite values (the model's or an adapter's weights are not finite)"
    }
}

public struct GeneratedImage: Sendable {
    public let width: Int
    public let height: Int
    /// 8-bit RGB, row-major, as diffusers' numpy_to_pil makes it: round(clamp(x / 2 + 0.5, 0, 1) * 255).
    public let rgb: [UInt8]
    /// The final latents (before scaling and decoding), for parity checks.
    public let latents: Tensor
    public let seed: UInt64
    public let scheduler: SchedulerName
    public let timings: GenerationTimings
}

public final class StableDiffusionPipeline {
    public let model: StableDiffusionModel

    public init(model: StableDiffusionModel) {
        self.model = model
    }

    /// Fills in the model's defaults and checks every field (`GenerationRequest.resolve`).
    public func resolve(_ request: GenerationRequest, limits: RequestLimits = .cli) throws -> ResolvedRequest {
        try request.resolve(for: ModelFacts(model), limits: limits)
    }

    /// Runs txt2img. `progress(step, total)` is called after each denoising step; returning false cancels.
    public func generate(_ request: GenerationRequest,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> GeneratedImage {
        try generate(resolve(request), progress: progress)
    }

    /// Runs txt2img for a request `resolve` checked. `progress(step, total)` is called after each
    /// denoising step; returning false cancels.
    public func generate(_ resolved: ResolvedRequest, progress: ((Int, Int) -> Bool)? = nil) throws -> GeneratedImage {
        let request = resolved.request
        let (width, height, schedulerName) = (resolved.width, resolved.height, resolved.scheduler)
        var scheduler = try makeScheduler(schedulerName, config: ModelFacts(model).schedulerConfig(for: request), steps: request.steps)
        var timings = GenerationTimings()
        let doGuidance = request.guidance > 1

        // encode_prompt: the negative prompt ("" when absent) is encoded without clip_skip, as diffusers does.
        var start = Stopwatch()
        var context: Tensor
        var added: AddedConditions?
        if model.isXL {
            let (prompt, pooled) = encodeXL(request.prompt, clipSkip: request.clipSkip ?? 0)
            context = prompt
            var textEmbeds = pooled
            if doGuidance {
                let negative: (context: Tensor, pooled: Tensor)
                if request.negativePrompt == nil && model.forceZerosForEmptyPrompt {
                    negative = (Tensor(zeros: prompt.shape), Tensor(zeros: pooled.shape))
                } else {
                    negative = encodeXL(request.negativePrompt ?? "", clipSkip: 0)
                }
                context = Tensor.concatenate([negative.context, prompt])
                textEmbeds = Tensor.concatenate([negative.pooled, pooled])
            }
            // _get_add_time_ids: original size, crop top-left, target size (original = target = the request's).
            let timeIds: [Float] = [Float(height), Float(width), 0, 0, Float(height), Float(width)]
            added = AddedConditions(textEmbeds: textEmbeds, timeIds: Array(repeating: timeIds, count: context.shape[0]))
        } else {
            let promptIDs = model.tokenizer.tokenize(request.prompt)
            context = model.textEncoder([promptIDs], clipSkip: request.clipSkip)
            if doGuidance {
                let negativeIDs = model.tokenizer.tokenize(request.negativePrompt ?? "")
                let negative = model.textEncoder([negativeIDs])
                context = Tensor.concatenate([negative, context])      // [2, tokens, dim]: uncond first
            }
        }
        model.releaseIdlePages(.textEncoders)
        model.releaseIdlePages(.unetFusedBases)
        timings.textEncodeMs = start.elapsedMs

        // prepare_latents: randn with the request's generator, scaled by init_noise_sigma.
        start = Stopwatch()
        var generator = TorchGenerator(seed: request.seed)
        let scale = model.vaeScaleFactor
        let latentShape = [1, model.unet.config.inChannels, height / scale, width / scale]
        var latents = generator.randn(latentShape) * scheduler.initNoiseSigma

        let timesteps = scheduler.timesteps
        for (i, t) in timesteps.enumerated() {
            let modelInput = doGuidance ? Tensor.concatenate([latents, latents]) : latents
            let scaledInput = scheduler.scaleModelInput(modelInput, stepIndex: i)
            var noise = model.unet(scaledInput, timestep: t, context: context, added: added)
            if doGuidance {
                // noise_pred_uncond + guidance * (noise_pred_text - noise_pred_uncond)
                let half = noise.count / 2
                let guided = Tensor(zeros: latentShape)
                let (uncond, text) = (noise.data, noise.data + half)
                for j in 0..<half { guided.data[j] = uncond[j] + request.guidance * (text[j] - uncond[j]) }
                noise = guided
            }
            latents = scheduler.step(modelOutput: noise, stepIndex: i, sample: latents, generator: &generator)
            if let progress, !progress(i + 1, timesteps.count) { throw GenerationError.cancelled }
        }
        timings.denoiseMs = start.elapsedMs

        start = Stopwatch()
        // The UNet's idle activation buffers are no use to the VAE (other sizes), and the VAE's are
        // no use to the next request's UNet: hand both back so they do not add up in peak memory
        // (at 512x512 the two sets are ~1 GB each).
        BufferPool.drain()
        model.releaseIdlePages(.unet)
        let decoded = model.decoder.decode(latents * (1 / model.decoder.scalingFactor))
        let rgb = try Self.toRGB8(decoded)
        BufferPool.drain()
        timings.decodeMs = start.elapsedMs
        return GeneratedImage(width: width, height: height, rgb: rgb, latents: latents, seed: request.seed,
                              scheduler: schedulerName, timings: timings)
    }

    /// SDXL encode_prompt for one text: both encoders' `hidden_states[-(clip_skip + 2)]` side by side
    /// [1, tokens, hidden + hidden_2], and text_encoder_2's pooled projection [1, projection_dim].
    func encodeXL(_ text: String, clipSkip: Int) -> (context: Tensor, pooled: Tensor) {
        guard let second = model.secondText else { preconditionFailure("encodeXL on a model without text_encoder_2") }
        let first = model.textEncoder.penultimateAndPooled([model.tokenizer.tokenize(text)], skip: clipSkip).hidden
        let (hidden2, pooled) = second.encoder.penultimateAndPooled([second.tokenizer.tokenize(text)], skip: clipSkip)
        let tokens = first.shape[1], (w1, w2) = (first.shape[2], hidden2.shape[2])
        precondition(hidden2.shape[1] == tokens, "tokenizer and tokenizer_2 give different lengths")
        let context = Tensor(uninitialized: [1, tokens, w1 + w2])
        for t in 0..<tokens {
            (context.data + t * (w1 + w2)).update(from: first.data + t * w1, count: w1)
            (context.data + t * (w1 + w2) + w1).update(from: hidden2.data + t * w2, count: w2)
        }
        return (context, pooled!)
    }

    /// [1, 3, H, W] in about [-1, 1] -> interleaved RGB bytes, as VaeImageProcessor.postprocess +
    /// numpy_to_pil: (x / 2 + 0.5).clamp(0, 1), then (x * 255).round() (half to even, like numpy).
    static func toRGB8(_ image: Tensor) throws -> [UInt8] {
        let (height, width) = (image.shape[2], image.shape[3])
        let plane = height * width
        var rgb = [UInt8](repeating: 0, count: plane * 3)
        for c in 0..<3 {
            let channel = image.data + c * plane
            for i in 0..<plane {
                guard channel[i].isFinite else { throw NonFiniteImageError() }
                let unit = min(max(channel[i] / 2 + 0.5, 0), 1)
                rgb[i * 3 + c] = UInt8((unit * 255).rounded(.toNearestOrEven))
            }
        }
        return rgb
    }
}
