import HotswapModels
import HotswapCore

// Port of diffusers/schedulers/scheduling_ddim.py (DDIMScheduler, diffusers 0.42).
// Not supported (makeScheduler throws): thresholding (dynamic thresholding). Always eta = 0, the
// pipeline default, so step never draws noise; use_clipped_model_output and variance_noise are
// not offered.

/// Denoising diffusion implicit models (Song et al. 2020), deterministic (eta = 0).
public struct DDIMScheduler: Scheduler {
    public let timesteps: [Float]
    public let initNoiseSigma: Float = 1
    let schedule: NoiseSchedule
    let predictionType: PredictionType
    let clipSampleRange: Float?
    /// alphas_cumprod before the first training step: 1, or alphas_cumprod[0] (set_alpha_to_one).
    let finalAlphaCumprod: Float
    /// num_train_timesteps // num_inference_steps: DDIM's distance to the previous timestep,
    /// whatever the spacing.
    let stepRatio: Int

    init(config: SchedulerConfig, steps: Int) throws {
        let name = "DDIMScheduler"
        let numTrainTimesteps = config.numTrainTimesteps ?? 1000
        try checkSteps(steps, numTrainTimesteps: numTrainTimesteps, scheduler: name)
        predictionType = try option(config.predictionType, default: .epsilon, key: "prediction_type", scheduler: name,
                                    allowed: [.epsilon, .sample, .vPrediction])
        let spacing = try option(config.timestepSpacing, default: TimestepSpacing.leading, key: "timestep_spacing",
                                 scheduler: name, allowed: [.linspace, .leading, .trailing])
        try requireOff(config.thresholding, key: "thresholding", scheduler: name)
        schedule = try NoiseSchedule(config: config, scheduler: name,
                                     defaults: (0.0001, 0.02, "linear"), numTrainTimesteps: numTrainTimesteps,
                                     allowsRescale: true, zeroSnrPinsLast: false)
        clipSampleRange = (config.clipSample ?? true) ? Float(config.clipSampleRange ?? 1) : nil
        finalAlphaCumprod = (config.setAlphaToOne ?? true) ? 1 : schedule.alphasCumprod[0]
        let ratio = numTrainTimesteps / steps
        stepRatio = ratio

        let times: [Int]
        switch spacing {
        case .linspace:
            times = NumPy.linspace(0, Double(numTrainTimesteps - 1), count: steps).reversed().map { Int(NumPy.round($0)) }
        case .leading:
            times = (0..<steps).reversed().map { $0 * ratio + (config.stepsOffset ?? 0) }
        case .trailing:
            times = NumPy.arange(Double(numTrainTimesteps), 0, step: -Double(numTrainTimesteps) / Double(steps))
                .map { Int(NumPy.round($0)) - 1 }
        }
        try checkTrainingTimesteps(times, in: schedule, scheduler: name, steps: steps)
        timesteps = times.map(Float.init)
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor,
                              generator: inout TorchGenerator) -> Tensor {
        let timestep = Int(timesteps[stepIndex])
        let prevTimestep = timestep - stepRatio
        let alphaProdT = schedule.alphaCumprod(at: timestep)
        let alphaProdTPrev = prevTimestep >= 0 ? schedule.alphaCumprod(at: prevTimestep) : finalAlphaCumprod
        let betaProdT = 1 - alphaProdT
        let sqrtAlpha = alphaProdT.squareRoot(), sqrtBeta = betaProdT.squareRoot()

        var predOriginal: Tensor
        let predEpsilon: Tensor
        switch predictionType {
        case .epsilon:
            predOriginal = Elementwise.map(sample, modelOutput) { x, e in (x - sqrtBeta * e) / sqrtAlpha }
            predEpsilon = modelOutput
        case .sample:
            predOriginal = modelOutput
            predEpsilon = Elementwise.map(sample, modelOutput) { x, x0 in (x - sqrtAlpha * x0) / sqrtBeta }
        case .vPrediction:
            predOriginal = Elementwise.map(sample, modelOutput) { x, v in sqrtAlpha * x - sqrtBeta * v }
            predEpsilon = Elementwise.map(sample, modelOutput) { x, v in sqrtAlpha * v + sqrtBeta * x }
        }
        if let range = clipSampleRange {
            predOriginal = Elementwise.map(predOriginal) { Swift.min(Swift.max($0, -range), range) }
        }
        // _get_variance; with eta = 0 it only matters through NaN propagation, as in diffusers.
        let betaProdTPrev = 1 - alphaProdTPrev
        let variance = (betaProdTPrev / betaProdT) * (1 - alphaProdT / alphaProdTPrev)
        let stdDevT = 0 * variance.squareRoot()
        let directionCoefficient = (1 - alphaProdTPrev - stdDevT * stdDevT).squareRoot()
        let sqrtAlphaPrev = alphaProdTPrev.squareRoot()
        return Elementwise.map(predOriginal, predEpsilon) { x0, e in sqrtAlphaPrev * x0 + directionCoefficient * e }
    }
}

/// Schedulers that index alphas_cumprod by timestep need every timestep to be a valid Python index.
func checkTrainingTimesteps(_ times: [Int], in schedule: NoiseSchedule, scheduler: String, steps: Int) throws {
    if let bad = times.first(where: { !schedule.hasIndex($0) }) {
        throw SchedulerError.scheduleOutOfRange(
            scheduler: scheduler, steps: steps,
            reason: "timestep \(bad) is outside alphas_cumprod (\(schedule.alphasCumprod.count) training steps)")
    }
}
