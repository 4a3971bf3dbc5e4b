import HotswapModels
import HotswapCore

// Port of diffusers/schedulers/scheduling_pndm.py (PNDMScheduler, diffusers 0.42).
// Not supported (makeScheduler throws): prediction_type "sample" (diffusers raises in step).
// The class has no rescale_betas_zero_snr option; like diffusers, that key is ignored.
// Runge-Kutta warm-up (skip_prk_steps false, the class default) is supported and, as in diffusers,
// needs at least 4 steps.

/// Pseudo numerical methods for diffusion models (Liu et al. 2022). With skip_prk_steps (Stable
/// Diffusion 1.x folders) it is PLMS: linear multistep over the last four model outputs, warmed up
/// with a repeated second timestep.
public struct PNDMScheduler: Scheduler {
    public let timesteps: [Float]
    public let initNoiseSigma: Float = 1
    let schedule: NoiseSchedule
    let predictionType: PredictionType
    let finalAlphaCumprod: Float
    let skipPrkSteps: Bool
    /// num_train_timesteps // num_inference_steps
    let stepRatio: Int
    let prkTimesteps: [Int]

    // Multistep state, as diffusers keeps it.
    private var counter = 0
    private var ets: [Tensor] = []
    private var curSample: Tensor?
    private var curModelOutput: Tensor?

    init(config: SchedulerConfig, steps: Int) throws {
        let name = "PNDMScheduler"
        let numTrainTimesteps = config.numTrainTimesteps ?? 1000
        try checkSteps(steps, numTrainTimesteps: numTrainTimesteps, scheduler: name)
        predictionType = try option(config.predictionType, default: .epsilon, key: "prediction_type", scheduler: name,
                                    allowed: [.epsilon, .vPrediction])
        let spacing = try option(config.timestepSpacing, default: TimestepSpacing.leading, key: "timestep_spacing",
                                 scheduler: name, allowed: [.linspace, .leading, .trailing])
        schedule = try NoiseSchedule(config: config, scheduler: name,
                                     defaults: (0.0001, 0.02, "linear"), numTrainTimesteps: numTrainTimesteps,
                                     allowsRescale: false, zeroSnrPinsLast: false)
        finalAlphaCumprod = (config.setAlphaToOne ?? false) ? 1 : schedule.alphasCumprod[0]
        skipPrkSteps = config.skipPrkSteps ?? false
        let ratio = numTrainTimesteps / steps
        stepRatio = ratio

        // _timesteps, ascending
        let base: [Int]
        switch spacing {
        case .linspace:
            base = NumPy.linspace(0, Double(numTrainTimesteps - 1), count: steps).map { Int(NumPy.round($0)) }
        case .leading:
            base = (0..<steps).map { $0 * ratio + (config.stepsOffset ?? 0) }
        case .trailing:
            base = NumPy.arange(Double(numTrainTimesteps), 0, step: -Double(numTrainTimesteps) / Double(steps))
                .reversed().map { Int(NumPy.round($0)) - 1 }
        }
        let plms: [Int]
        if skipPrkSteps {
            // concatenate([_timesteps[:-1], _timesteps[-2:-1], _timesteps[-1:]])[::-1]
            let n = base.count
            plms = (Array(base.prefix(max(n - 1, 0))) + Array(base[max(n - 2, 0)..<max(n - 1, 0)]) + Array(base.suffix(1)))
                .reversed()
            prkTimesteps = []
        } else {
            guard base.count >= 4 else {
                throw SchedulerError.stepsOutOfRange(scheduler: name, steps: steps, allowed: 4...numTrainTimesteps,
                                                     reason: "the Runge-Kutta warm-up (skip_prk_steps false) needs 4 timesteps")
            }
            // Each of the last four timesteps and its half-step midpoint, every value but the
            // last repeated, then trimmed at both ends: 12 Runge-Kutta evaluations, newest first.
            let halfStep = ratio / 2
            let pairs = base.suffix(4).flatMap { [$0, $0 + halfStep] }
            let repeated = pairs.dropLast().flatMap { [$0, $0] }
            prkTimesteps = Array(repeated.dropFirst().dropLast().reversed())
            plms = Array(base.dropLast(3).reversed())
        }
        let times = prkTimesteps + plms
        try checkTrainingTimesteps(times, in: schedule, scheduler: name, steps: steps)
        if skipPrkSteps, times.count > 1, !schedule.hasIndex(times[1] + ratio) {
            throw SchedulerError.scheduleOutOfRange(scheduler: name, steps: steps,
                                                    reason: "timestep \(times[1] + ratio) is outside alphas_cumprod")
        }
        timesteps = times.map(Float.init)
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor,
                              generator: inout TorchGenerator) -> Tensor {
        let timestep = Int(timesteps[stepIndex])
        if counter < prkTimesteps.count && !skipPrkSteps {
            return stepPRK(modelOutput: modelOutput, timestep: timestep, sample: sample)
        }
        return stepPLMS(modelOutput: modelOutput, timestep: timestep, sample: sample)
    }

    /// Fourth-order Runge-Kutta warm-up: four evaluations per step, weights 1/6, 1/3, 1/3, 1/6.
    private mutating func stepPRK(modelOutput: Tensor, timestep: Int, sample: Tensor) -> Tensor {
        let diffToPrev = counter % 2 != 0 ? 0 : stepRatio / 2
        let prevTimestep = timestep - diffToPrev
        let rkTimestep = prkTimesteps[counter / 4 * 4]
        var output = modelOutput
        switch counter % 4 {
        case 0:
            curModelOutput = accumulate(curModelOutput, Float(1.0 / 6), modelOutput)
            ets.append(modelOutput)
            curSample = sample
        case 1, 2:
            curModelOutput = accumulate(curModelOutput, Float(1.0 / 3), modelOutput)
        default:
            let weight = Float(1.0 / 6)
            output = curModelOutput.map { sum in Elementwise.map(sum, modelOutput) { s, m in s + weight * m } }
                ?? Elementwise.map(modelOutput) { weight * $0 }
            curModelOutput = nil
        }
        let prev = previousSample(curSample ?? sample, timestep: rkTimestep, prevTimestep: prevTimestep, modelOutput: output)
        counter += 1
        return prev
    }

    /// `cur_model_output += weight * model_output`, where cur_model_output starts as the integer 0.
    private func accumulate(_ sum: Tensor?, _ weight: Float, _ modelOutput: Tensor) -> Tensor {
        guard let sum else { return Elementwise.map(modelOutput) { 0 + weight * $0 } }
        return Elementwise.map(sum, modelOutput) { s, m in s + weight * m }
    }

    /// Linear multistep (Adams-Bashforth) over the stored model outputs.
    private mutating func stepPLMS(modelOutput: Tensor, timestep: Int, sample: Tensor) -> Tensor {
        var timestep = timestep
        var prevTimestep = timestep - stepRatio
        if counter != 1 {
            ets = Array(ets.suffix(3)) + [modelOutput]
        } else {
            prevTimestep = timestep
            timestep += stepRatio
        }
        var sample = sample
        let output: Tensor
        if ets.count == 1 && counter == 0 {
            output = modelOutput
            curSample = sample
        } else if ets.count == 1 && counter == 1 {
            output = Elementwise.map(modelOutput, ets[0]) { m, e in (m + e) / 2 }
            sample = curSample ?? sample
            curSample = nil
        } else if ets.count == 2 {
            output = Elementwise.map(ets[1], ets[0]) { e1, e2 in (3 * e1 - e2) / 2 }
        } else if ets.count == 3 {
            output = Elementwise.map(ets[2], ets[1], ets[0]) { e1, e2, e3 in ((23 * e1 - 16 * e2) + 5 * e3) / 12 }
        } else {
            let n = ets.count, weight = Float(1.0 / 24)
            output = Elementwise.map(ets[n - 1], ets[n - 2], ets[n - 3], ets[n - 4]) { e1, e2, e3, e4 in
                weight * (((55 * e1 - 59 * e2) + 37 * e3) - 9 * e4)
            }
        }
        let prev = previousSample(sample, timestep: timestep, prevTimestep: prevTimestep, modelOutput: output)
        counter += 1
        return prev
    }

    /// `_get_prev_sample`: formula (9) of the PNDM paper.
    private func previousSample(_ sample: Tensor, timestep: Int, prevTimestep: Int, modelOutput: Tensor) -> Tensor {
        let alphaProdT = schedule.alphaCumprod(at: timestep)
        let alphaProdTPrev = prevTimestep >= 0 ? schedule.alphaCumprod(at: prevTimestep) : finalAlphaCumprod
        let betaProdT = 1 - alphaProdT
        let betaProdTPrev = 1 - alphaProdTPrev
        var output = modelOutput
        if predictionType == .vPrediction {
            let sqrtAlpha = alphaProdT.squareRoot(), sqrtBeta = betaProdT.squareRoot()
            output = Elementwise.map(modelOutput, sample) { v, x in sqrtAlpha * v + sqrtBeta * x }
        }
        let sampleCoeff = (alphaProdTPrev / alphaProdT).squareRoot()
        let denominator = alphaProdT * betaProdTPrev.squareRoot() + (alphaProdT * betaProdT * alphaProdTPrev).squareRoot()
        let difference = alphaProdTPrev - alphaProdT
        return Elementwise.map(sample, output) { x, e in sampleCoeff * x - (difference * e) / denominator }
    }
}
