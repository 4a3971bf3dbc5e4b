import HotswapModels
import HotswapCore

// Port of diffusers/schedulers/scheduling_lcm.py (LCMScheduler, diffusers 0.42).
// Not supported (makeScheduler throws): thresholding. Custom timesteps and strength < 1 (img2img)
// are not offered. timestep_spacing and steps_offset are read by diffusers' LCMScheduler but
// do not affect its schedule, so they are ignored here too.

/// Latent consistency model multistep sampling: each step predicts the clean latent through the
/// consistency boundary condition, then re-noises it to the next timestep with fresh noise
/// (`randn(model_output.shape)`, drawn on every step but the last).
public struct LCMScheduler: Scheduler {
    public let timesteps: [Float]
    public let initNoiseSigma: Float = 1
    let schedule: NoiseSchedule
    let predictionType: PredictionType
    let clipSampleRange: Float?
    let finalAlphaCumprod: Float
    let timestepScaling: Float
    private var currentIndex: Int?

    init(config: SchedulerConfig, steps: Int) throws {
        let name = "LCMScheduler"
        let numTrainTimesteps = config.numTrainTimesteps ?? 1000
        try checkSteps(steps, numTrainTimesteps: numTrainTimesteps, scheduler: name)
        predictionType = try option(config.predictionType, default: .epsilon, key: "prediction_type", scheduler: name,
                                    allowed: [.epsilon, .sample, .vPrediction])
        try requireOff(config.thresholding, key: "thresholding", scheduler: name)
        schedule = try NoiseSchedule(config: config, scheduler: name,
                                     defaults: (0.00085, 0.012, "scaled_linear"), numTrainTimesteps: numTrainTimesteps,
                                     allowsRescale: true, zeroSnrPinsLast: false)
        clipSampleRange = (config.clipSample ?? false) ? Float(config.clipSampleRange ?? 1) : nil
        finalAlphaCumprod = (config.setAlphaToOne ?? true) ? 1 : schedule.alphasCumprod[0]
        timestepScaling = Float(config.timestepScaling ?? 10)

        let originalSteps = config.originalInferenceSteps ?? 50
        guard (1...numTrainTimesteps).contains(originalSteps) else {
            throw SchedulerError.invalidValue(scheduler: name, key: "original_inference_steps", value: "\(originalSteps)",
                                              reason: "must be in 1...num_train_timesteps (\(numTrainTimesteps))")
        }
        guard steps <= originalSteps else {
            throw SchedulerError.stepsOutOfRange(scheduler: name, steps: steps, allowed: 1...originalSteps,
                                                 reason: "original_inference_steps is \(originalSteps)")
        }
        // The distillation schedule: every k-th training timestep, k = N // original_inference_steps.
        let k = numTrainTimesteps / originalSteps
        let origin = (1...originalSteps).map { $0 * k - 1 }.reversed() as [Int]
        let picks = NumPy.linspace(0, Double(origin.count), count: steps, endpoint: false).map { Int($0.rounded(.down)) }
        timesteps = picks.map { Float(origin[$0]) }
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor,
                              generator: inout TorchGenerator) -> Tensor {
        let index = currentIndex ?? (beginIndex(of: timesteps[stepIndex], in: timesteps) ?? stepIndex)
        let timestep = Int(timesteps[stepIndex])
        let prevTimestep = index + 1 < timesteps.count ? Int(timesteps[index + 1]) : timestep
        let alphaProdT = schedule.alphaCumprod(at: timestep)
        let alphaProdTPrev = prevTimestep >= 0 ? schedule.alphaCumprod(at: prevTimestep) : finalAlphaCumprod
        let sqrtAlpha = alphaProdT.squareRoot(), sqrtBeta = (1 - alphaProdT).squareRoot()

        // get_scalings_for_boundary_condition_discrete with sigma_data = 0.5
        let scaled = Float(timestep) * timestepScaling
        let cSkip = 1 / (scaled * scaled + 0.25) * 0.25  // 0.25 / tensor is reciprocal(tensor) * 0.25
        let cOut = scaled / (scaled * scaled + 0.25).squareRoot()

        var predOriginal: Tensor
        switch predictionType {
        case .epsilon: predOriginal = Elementwise.map(sample, modelOutput) { x, e in (x - sqrtBeta * e) / sqrtAlpha }
        case .sample: predOriginal = modelOutput
        case .vPrediction: predOriginal = Elementwise.map(sample, modelOutput) { x, v in sqrtAlpha * x - sqrtBeta * v }
        }
        if let range = clipSampleRange {
            predOriginal = Elementwise.map(predOriginal) { Swift.min(Swift.max($0, -range), range) }
        }
        let denoised = Elementwise.map(predOriginal, sample) { x0, x in cOut * x0 + cSkip * x }
        currentIndex = index + 1
        guard index != timesteps.count - 1 else { return denoised }
        let noise = generator.randn(modelOutput.shape)
        let sqrtAlphaPrev = alphaProdTPrev.squareRoot(), sqrtBetaPrev = (1 - alphaProdTPrev).squareRoot()
        return Elementwise.map(denoised, noise) { d, n in sqrtAlphaPrev * d + sqrtBetaPrev * n }
    }
}
