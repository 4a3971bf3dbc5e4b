import Foundation
import HotswapModels
import HotswapCore

// Port of diffusers/schedulers/scheduling_euler_discrete.py (EulerDiscreteScheduler, diffusers 0.42).
// Not supported (makeScheduler throws): interpolation_type "log_linear", use_exponential_sigmas,
// use_beta_sigmas, custom timesteps/sigmas, and stochastic sampling (s_churn > 0; the pipeline
// never passes it, so step never draws noise).

/// Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn).
public struct EulerDiscreteScheduler: Scheduler {
    public let timesteps: [Float]
    /// The noise level of each timestep, plus the final one (zero, or sigma_min).
    public let sigmas: [Float]
    public let initNoiseSigma: Float
    let predictionType: PredictionType
    /// diffusers' `_step_index`: set from the first timestep seen, then advanced by each step.
    private var currentIndex: Int?

    init(config: SchedulerConfig, steps: Int) throws {
        let name = "EulerDiscreteScheduler"
        let numTrainTimesteps = config.numTrainTimesteps ?? 1000
        try checkSteps(steps, numTrainTimesteps: numTrainTimesteps, scheduler: name)
        predictionType = try option(config.predictionType, default: .epsilon, key: "prediction_type", scheduler: name,
                                    allowed: [.epsilon, .sample, .vPrediction])
        let spacing = try option(config.timestepSpacing, default: TimestepSpacing.linspace, key: "timestep_spacing",
                                 scheduler: name, allowed: [.linspace, .leading, .trailing])
        let finalSigmas = try option(config.finalSigmasType, default: FinalSigmasType.zero, key: "final_sigmas_type",
                                     scheduler: name, allowed: [.zero, .sigmaMin])
        if let interpolation = config.interpolationType, interpolation != "linear" {
            throw SchedulerError.unsupportedValue(scheduler: name, key: "interpolation_type", value: interpolation)
        }
        let timestepType = config.timestepType ?? "discrete"
        guard ["discrete", "continuous"].contains(timestepType) else {
            throw SchedulerError.unsupportedValue(scheduler: name, key: "timestep_type", value: timestepType)
        }
        try requireOff(config.useExponentialSigmas, key: "use_exponential_sigmas", scheduler: name)
        try requireOff(config.useBetaSigmas, key: "use_beta_sigmas", scheduler: name)
        let schedule = try NoiseSchedule(config: config, scheduler: name,
                                         defaults: (0.0001, 0.02, "linear"), numTrainTimesteps: numTrainTimesteps,
                                         allowsRescale: true, zeroSnrPinsLast: true)

        var times = eulerTimesteps(spacing: spacing, steps: steps, numTrainTimesteps: numTrainTimesteps,
                                   stepsOffset: config.stepsOffset ?? 0)
        let trainingSigmas = schedule.trainingSigmas
        var sigmas = times.map { NumPy.interp($0, trainingSigmas) }
        if config.useKarrasSigmas ?? false {
            // Karras spacing between the interpolated (float64) end points, or the configured ones.
            let logSigmas = SigmaSchedule.logSigmas(trainingSigmas)
            sigmas = SigmaSchedule.karras(sigmaMin: config.sigmaMin ?? sigmas[sigmas.count - 1],
                                          sigmaMax: config.sigmaMax ?? sigmas[0], count: steps)
            times = sigmas.map { SigmaSchedule.sigmaToT($0, logSigmas: logSigmas) }
        }
        let last: Float = finalSigmas == .zero ? 0 : trainingSigmas[0]
        self.sigmas = sigmas.map { Float($0) } + [last]
        if timestepType == "continuous" && predictionType == .vPrediction {
            timesteps = self.sigmas.dropLast().map { 0.25 * Foundation.log($0) }
        } else {
            timesteps = times.map { Float($0) }
        }
        initNoiseSigma = eulerInitNoiseSigma(self.sigmas, spacing: spacing)
        try checkStepIndexRange(timesteps: timesteps, sigmaCount: self.sigmas.count, scheduler: name, steps: steps)
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
        let sigmaHat = sigma  // sigma * (gamma + 1) with gamma = 0 (no churn)
        let denoised: Tensor
        switch predictionType {
        case .epsilon:
            denoised = Elementwise.map(sample, modelOutput) { x, e in x - sigmaHat * e }
        case .vPrediction:
            // denoised = model_output * c_out + input * c_skip
            let cOut = -sigma / (sigma * sigma + 1).squareRoot()
            let cSkipDivisor = sigma * sigma + 1
            denoised = Elementwise.map(sample, modelOutput) { x, v in v * cOut + x / cSkipDivisor }
        case .sample:
            denoised = modelOutput
        }
        let dt = sigmas[index + 1] - sigmaHat
        currentIndex = index + 1
        return Elementwise.map(sample, denoised) { x, x0 in x + ((x - x0) / sigmaHat) * dt }
    }

    private func firstIndex(_ stepIndex: Int) -> Int {
        beginIndex(of: timesteps[stepIndex], in: timesteps) ?? stepIndex
    }
}

/// Timesteps of Euler and Euler ancestral (float32 in diffusers; the values are integers except
/// for "linspace").
func eulerTimesteps(spacing: TimestepSpacing, steps: Int, numTrainTimesteps: Int, stepsOffset: Int) -> [Double] {
    switch spacing {
    case .linspace:
        // np.linspace(..., dtype=np.float32): computed in float64, then rounded to float32
        return NumPy.linspace(0, Double(numTrainTimesteps - 1), count: steps).reversed().map { Double(Float($0)) }
    case .leading:
        let ratio = numTrainTimesteps / steps
        return (0..<steps).reversed().map { Double($0 * ratio + stepsOffset) }
    case .trailing:
        let ratio = Double(numTrainTimesteps) / Double(steps)
        return NumPy.arange(Double(numTrainTimesteps), 0, step: -ratio).map { NumPy.round($0) - 1 }
    }
}

/// `init_noise_sigma` of Euler and Euler ancestral: max sigma, or sqrt(max^2 + 1) for "leading".
func eulerInitNoiseSigma(_ sigmas: [Float], spacing: TimestepSpacing) -> Float {
    let maxSigma = sigmas.max() ?? 0
    return spacing == .leading ? (maxSigma * maxSigma + 1).squareRoot() : maxSigma
}

/// Schedulers that keep diffusers' step counter start it at the second copy of a repeated first
/// timestep, and then read `sigmas[index + 1]` past the end on the last step (an IndexError in
/// diffusers). Refuse such schedules up front.
func checkStepIndexRange(timesteps: [Float], sigmaCount: Int, scheduler: String, steps: Int) throws {
    guard let first = timesteps.first, let begin = beginIndex(of: first, in: timesteps) else { return }
    if begin + timesteps.count > sigmaCount - 1 {
        throw SchedulerError.scheduleOutOfRange(
            scheduler: scheduler, steps: steps,
            reason: "the first timestep \(first) repeats, so diffusers' step counter runs past the last sigma")
    }
}
