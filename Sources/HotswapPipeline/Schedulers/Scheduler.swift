import HotswapModels
import HotswapCore

/// A diffusion scheduler, driven the way StableDiffusionPipeline.__call__ drives a diffusers one:
///
///     var latents = generator.randn(shape) * scheduler.initNoiseSigma
///     for (i, t) in scheduler.timesteps.enumerated() {
///         let input = scheduler.scaleModelInput(latents, stepIndex: i)   // (CFG doubles it first)
///         let modelOutput = unet(input, t)                               // (after guidance)
///         latents = scheduler.step(modelOutput: modelOutput, stepIndex: i, sample: latents, generator: &generator)
///     }
///
/// `stepIndex` i is the position of the current timestep in `timesteps`. Schedulers that draw noise
/// (euler-a, lcm, sde-dpmsolver++) draw it from the same generator that made the initial latents,
/// in diffusers' order and with the model output's shape. All work is float32 in diffusers' operation
/// order (numpy float64 where diffusers uses numpy). torch's CPU sqrt/log/exp come from MKL and are
/// faithfully, not correctly, rounded, so a coefficient can differ from diffusers' by an ulp; see the
/// tolerances in SchedulerTests.
public protocol Scheduler {
    /// What the UNet receives, in order (diffusers' `scheduler.timesteps`).
    var timesteps: [Float] { get }
    /// The initial latents are multiplied by this (`init_noise_sigma`).
    var initNoiseSigma: Float { get }
    /// `scale_model_input(sample, timesteps[stepIndex])`.
    func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor
    /// `step(model_output, timesteps[stepIndex], sample, generator=...).prev_sample`.
    mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor, generator: inout TorchGenerator) -> Tensor
}

/// `Class.from_config(config)` followed by `set_timesteps(steps)` for the class `name` maps to.
public func makeScheduler(_ name: SchedulerName, config: SchedulerConfig, steps: Int) throws -> any Scheduler {
    switch name {
    case .euler: return try EulerDiscreteScheduler(config: config, steps: steps)
    case .eulerAncestral: return try EulerAncestralDiscreteScheduler(config: config, steps: steps)
    case .ddim: return try DDIMScheduler(config: config, steps: steps)
    case .dpmpp2m: return try DPMSolverMultistepScheduler(config: config, steps: steps)
    case .dpmpp2mKarras:
        var karras = config
        karras.useKarrasSigmas = true  // from_config(config, use_karras_sigmas=True)
        return try DPMSolverMultistepScheduler(config: karras, steps: steps)
    case .lcm: return try LCMScheduler(config: config, steps: steps)
    case .pndm: return try PNDMScheduler(config: config, steps: steps)
    }
}
