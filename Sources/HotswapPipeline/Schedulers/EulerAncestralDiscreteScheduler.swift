import HotswapModels
import HotswapCore

// Port of diffusers/schedulers/scheduling_euler_ancestral_discrete.py
// (EulerAncestralDiscreteScheduler, diffusers 0.42).
// Not supported (makeScheduler throws): prediction_type "sample" (diffusers raises
// NotImplementedError in step). The class has no Karras sigmas or final_sigmas_type option.

/// Euler ancestral ("Euler a"): an Euler step down to sigma_down, then fresh noise of size sigma_up.
/// Every step draws `randn(model_output.shape)` from the pipeline's generator, even the last one.
public struct EulerAncestralDiscreteScheduler: Scheduler {
    public let timesteps: [Float]
    /// The noise level of each timestep, plus a final 0.
    public let sigmas: [Float]
    public let initNoiseSigma: Float
    let predictionType: PredictionType
    private var currentIndex: Int?

    init(config: SchedulerConfig, steps: Int) throws {
        let name = "EulerAncestralDiscreteScheduler"
        let numTrainTimesteps = config.numTrainTimesteps ?? 1000
        try checkSteps(steps, numTrainTimesteps: numTrainTimesteps, scheduler: name)
        predictionType = try option(config.predictionType, default: .epsilon, key: "prediction_type", scheduler: name,
                                    allowed: [.epsilon, .vPrediction])
        let spacing = try option(config.timestepSpacing, default: TimestepSpacing.linspace, key: "timestep_spacing",
                                 scheduler: name, allowed: [.linspace, .leading, .trailing])
        let schedule = try NoiseSchedule(config: config, scheduler: name,
                                         defaults: (0.0001, 0.02, "linear"), numTrainTimesteps: numTrainTimesteps,
                                         allowsRescale: true, zeroSnrPinsLast: true)
        let times = eulerTimesteps(spacing: spacing, steps: steps, numTrainTimesteps: numTrainTimesteps,
                                   stepsOffset: config.stepsOffset ?? 0)
        let trainingSigmas = schedule.trainingSigmas
        sigmas = times.map { Float(NumPy.interp($0, trainingSigmas)) } + [0]
        timesteps = times.map { Float($0) }
        initNoiseSigma = eulerInitNoiseSigma(sigmas, spacing: spacing)
        try checkStepIndexRange(timesteps: timesteps, sigmaCount: sigmas.count, scheduler: name, steps: steps)
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor {
        let sigma = sigmas[currentIndex ?? firstIndex(stepIndex)]
        let divisor = (sigma * sigma + 1).squareRoot()
        return Elementwise.map(sample) { $0 / divisor }
    }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor,
                              generator: inout TorchGenerator) -> Tensor {
        let index = currentIndex ?? firstIndex(stepIndex)
        let sigma = sigmas[index]
        let denoised: Tensor
        switch predictionType {
        case .vPrediction:
            let cOut = -sigma / (sigma * sigma + 1).squareRoot()
            let cSkipDivisor = sigma * sigma + 1
            denoised = Elementwise.map(sample, modelOutput) { x, v in v * cOut + x / cSkipDivisor }
        default:
            denoised = Elementwise.map(sample, modelOutput) { x, e in x - sigma * e }
        }
        let sigmaFrom = sigma, sigmaTo = sigmas[index + 1]
        let sigmaUp = (sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo) / (sigmaFrom * sigmaFrom))
            .squareRoot()
        let sigmaDown = (sigmaTo * sigmaTo - sigmaUp * sigmaUp).squareRoot()
        let dt = sigmaDown - sigma
        let noise = generator.randn(modelOutput.shape)
        currentIndex = index + 1
        return Elementwise.map(sample, denoised, noise) { x, x0, n in
            (x + ((x - x0) / sigma) * dt) + n * sigmaUp
        }
    }

    private func firstIndex(_ stepIndex: Int) -> Int {
        beginIndex(of: timesteps[stepIndex], in: timesteps) ?? stepIndex
    }
}
