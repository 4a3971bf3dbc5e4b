import Foundation
import HotswapModels
import HotswapCore

// Port of diffusers/schedulers/scheduling_dpmsolver_multistep.py (DPMSolverMultistepScheduler,
// diffusers 0.42). Supports algorithm_type "dpmsolver++" (default) and "sde-dpmsolver++",
// solver_order 1-3, solver_type midpoint/heun, Karras sigmas, lower_order_final, euler_at_final,
// final_sigmas_type and lambda_min_clipped.
// Not supported (makeScheduler throws): algorithm_type "dpmsolver"/"sde-dpmsolver" (deprecated in
// diffusers), prediction_type "flow_prediction", thresholding, variance_type "learned"/
// "learned_range", use_exponential_sigmas, use_beta_sigmas, use_lu_lambdas, use_flow_sigmas, and
// custom timesteps. use_dynamic_shifting only matters with `mu`, which Stable Diffusion never passes.

/// DPM-Solver++ multistep (Lu et al. 2022): exponential-integrator updates in log-SNR time, using
/// the previous one or two data predictions for second/third order accuracy.
public struct DPMSolverMultistepScheduler: Scheduler {
    public let timesteps: [Float]
    /// The noise level of each timestep, plus the final one.
    public let sigmas: [Float]
    public let initNoiseSigma: Float = 1
    let predictionType: PredictionType
    let stochastic: Bool  // sde-dpmsolver++
    let solverOrder: Int
    let heun: Bool
    let lowerOrderFinal: Bool
    let eulerAtFinal: Bool
    let finalSigmasZero: Bool

    // Multistep state, as diffusers keeps it.
    private var modelOutputs: [Tensor?]
    private var lowerOrderNums = 0
    private var currentIndex: Int?

    init(config: SchedulerConfig, steps: Int) throws {
        let name = "DPMSolverMultistepScheduler"
        let numTrainTimesteps = config.numTrainTimesteps ?? 1000
        try checkSteps(steps, numTrainTimesteps: numTrainTimesteps, scheduler: name)
        predictionType = try option(config.predictionType, default: .epsilon, key: "prediction_type", scheduler: name,
                                    allowed: [.epsilon, .sample, .vPrediction])
        let spacing = try option(config.timestepSpacing, default: TimestepSpacing.linspace, key: "timestep_spacing",
                                 scheduler: name, allowed: [.linspace, .leading, .trailing])
        let finalSigmas = try option(config.finalSigmasType, default: FinalSigmasType.zero, key: "final_sigmas_type",
                                     scheduler: name, allowed: [.zero, .sigmaMin])
        switch config.algorithmType ?? "dpmsolver++" {
        case "dpmsolver++", "deis": stochastic = false  // diffusers maps "deis" to dpmsolver++
        case "sde-dpmsolver++": stochastic = true
        case let other: throw SchedulerError.unsupportedValue(scheduler: name, key: "algorithm_type", value: other)
        }
        switch config.solverType ?? "midpoint" {
        case "midpoint", "logrho", "bh1", "bh2": heun = false  // diffusers maps the UniPC/DEIS names to midpoint
        case "heun": heun = true
        case let other: throw SchedulerError.unsupportedValue(scheduler: name, key: "solver_type", value: other)
        }
        solverOrder = config.solverOrder ?? 2
        guard (1...3).contains(solverOrder) else {
            throw SchedulerError.unsupportedValue(scheduler: name, key: "solver_order", value: "\(solverOrder)")
        }
        try requireOff(config.thresholding, key: "thresholding", scheduler: name)
        if let variance = config.varianceType {
            throw SchedulerError.unsupportedValue(scheduler: name, key: "variance_type", value: variance)
        }
        try requireOff(config.useExponentialSigmas, key: "use_exponential_sigmas", scheduler: name)
        try requireOff(config.useBetaSigmas, key: "use_beta_sigmas", scheduler: name)
        try requireOff(config.useLuLambdas, key: "use_lu_lambdas", scheduler: name)
        try requireOff(config.useFlowSigmas, key: "use_flow_sigmas", scheduler: name)
        lowerOrderFinal = config.lowerOrderFinal ?? true
        eulerAtFinal = config.eulerAtFinal ?? false
        finalSigmasZero = finalSigmas == .zero
        let betaSchedule = config.betaSchedule ?? "linear"
        let schedule = try NoiseSchedule(config: config, scheduler: name,
                                         defaults: (0.0001, 0.02, "linear"), numTrainTimesteps: numTrainTimesteps,
                                         allowsRescale: true, zeroSnrPinsLast: true)

        // Timesteps stop where lambda (log-SNR) falls below lambda_min_clipped (default -inf: never).
        let lambdas = schedule.alphasCumprod.map { Foundation.log($0.squareRoot()) - Foundation.log((1 - $0).squareRoot()) }
        let lambdaMinClipped = config.lambdaMinClipped ?? -.infinity
        let clippedIndex = lambdas.reversed().firstIndex(where: { Double($0) >= lambdaMinClipped }) ?? lambdas.count
        let lastTimestep = numTrainTimesteps - clippedIndex
        var times: [Double]
        switch spacing {
        case .linspace:
            times = Array(NumPy.linspace(0, Double(lastTimestep - 1), count: steps + 1).map(NumPy.round).reversed().dropLast())
        case .leading:
            let ratio = lastTimestep / (steps + 1)
            times = (1...steps).reversed().map { Double($0 * ratio + (config.stepsOffset ?? 0)) }
        case .trailing:
            let ratio = Double(numTrainTimesteps) / Double(steps)
            times = NumPy.arange(Double(lastTimestep), 0, step: -ratio).map { NumPy.round($0) - 1 }
        }
        let trainingSigmas = schedule.trainingSigmas
        var sigmas: [Double]
        if config.useKarrasSigmas ?? false {
            let logSigmas = SigmaSchedule.logSigmas(trainingSigmas)
            sigmas = SigmaSchedule.karras(sigmaMin: Double(trainingSigmas[0]),
                                          sigmaMax: Double(trainingSigmas[trainingSigmas.count - 1]), count: steps)
            times = sigmas.map { SigmaSchedule.sigmaToT($0, logSigmas: logSigmas) }
            if betaSchedule != "squaredcos_cap_v2" { times = times.map(NumPy.round) }
        } else {
            sigmas = times.map { NumPy.interp($0, trainingSigmas) }
        }
        let last: Float = finalSigmas == .zero ? 0 : trainingSigmas[0]
        self.sigmas = sigmas.map { Float($0) } + [last]
        // torch .to(torch.int64) truncates toward zero
        timesteps = times.map { Float($0.rounded(.towardZero)) }
        modelOutputs = Array(repeating: nil, count: solverOrder)
        try checkDPMStepIndexRange()
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, stepIndex: Int, sample: Tensor,
                              generator: inout TorchGenerator) -> Tensor {
        let index = currentIndex ?? firstIndex(stepIndex)
        let count = timesteps.count
        let lowerOrderFinalStep = index == count - 1 && (eulerAtFinal || (lowerOrderFinal && count < 15) || finalSigmasZero)
        let lowerOrderSecondStep = index == count - 2 && lowerOrderFinal && count < 15

        let x0 = convertModelOutput(modelOutput, sample: sample, sigma: sigmas[index])
        modelOutputs.removeFirst()
        modelOutputs.append(x0)
        let noise = stochastic ? generator.randn(modelOutput.shape) : nil

        let prev: Tensor
        if solverOrder == 1 || lowerOrderNums < 1 || lowerOrderFinalStep {
            prev = firstOrderUpdate(x0, index: index, sample: sample, noise: noise)
        } else if solverOrder == 2 || lowerOrderNums < 2 || lowerOrderSecondStep {
            prev = secondOrderUpdate(index: index, sample: sample, noise: noise)
        } else {
            prev = thirdOrderUpdate(index: index, sample: sample, noise: noise)
        }
        if lowerOrderNums < solverOrder { lowerOrderNums += 1 }
        currentIndex = index + 1
        return prev
    }

    // MARK: - diffusers' helpers

    /// DPM-Solver++ works on data predictions x0.
    private func convertModelOutput(_ modelOutput: Tensor, sample: Tensor, sigma: Float) -> Tensor {
        let (alphaT, sigmaT) = SigmaSchedule.alphaSigma(sigma)
        switch predictionType {
        case .epsilon: return Elementwise.map(sample, modelOutput) { x, e in (x - sigmaT * e) / alphaT }
        case .sample: return modelOutput
        case .vPrediction: return Elementwise.map(sample, modelOutput) { x, v in alphaT * x - sigmaT * v }
        }
    }

    /// lambda = log(alpha) - log(sigma), the half log-SNR.
    private func lambda(_ alphaSigma: (alpha: Float, sigma: Float)) -> Float {
        Foundation.log(alphaSigma.alpha) - Foundation.log(alphaSigma.sigma)
    }

    private func firstOrderUpdate(_ x0: Tensor, index: Int, sample: Tensor, noise: Tensor?) -> Tensor {
        let t = SigmaSchedule.alphaSigma(sigmas[index + 1]), s = SigmaSchedule.alphaSigma(sigmas[index])
        let h = lambda(t) - lambda(s)
        if let noise {
            let a = t.sigma / s.sigma * Foundation.exp(-h)
            let b = t.alpha * (1 - Foundation.exp(-2 * h))
            let c = t.sigma * (1 - Foundation.exp(-2 * h)).squareRoot()
            return Elementwise.map(sample, x0, noise) { x, d, n in (a * x + b * d) + c * n }
        }
        let a = t.sigma / s.sigma
        let b = t.alpha * (Foundation.exp(-h) - 1)
        return Elementwise.map(sample, x0) { x, d in a * x - b * d }
    }

    private func secondOrderUpdate(index: Int, sample: Tensor, noise: Tensor?) -> Tensor {
        let t = SigmaSchedule.alphaSigma(sigmas[index + 1])
        let s0 = SigmaSchedule.alphaSigma(sigmas[index]), s1 = SigmaSchedule.alphaSigma(sigmas[index - 1])
        let lambdaT = lambda(t), lambdaS0 = lambda(s0), lambdaS1 = lambda(s1)
        let m0 = modelOutputs[solverOrder - 1]!, m1 = modelOutputs[solverOrder - 2]!
        let h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1
        let r0 = h0 / h
        let inverseR0 = 1 / r0
        let d1 = Elementwise.map(m0, m1) { a, b in inverseR0 * (a - b) }
        if let noise {
            let a = t.sigma / s0.sigma * Foundation.exp(-h)
            let b = t.alpha * (1 - Foundation.exp(-2 * h))
            let c = heun ? t.alpha * ((1 - Foundation.exp(-2 * h)) / (-2 * h) + 1) : 0.5 * b
            let e = t.sigma * (1 - Foundation.exp(-2 * h)).squareRoot()
            return Elementwise.map(sample, m0, d1, noise) { x, d0, d1, n in ((a * x + b * d0) + c * d1) + e * n }
        }
        let a = t.sigma / s0.sigma
        let b = t.alpha * (Foundation.exp(-h) - 1)
        if heun {
            let c = t.alpha * ((Foundation.exp(-h) - 1) / h + 1)
            return Elementwise.map(sample, m0, d1) { x, d0, d1 in (a * x - b * d0) + c * d1 }
        }
        let c = 0.5 * b
        return Elementwise.map(sample, m0, d1) { x, d0, d1 in (a * x - b * d0) - c * d1 }
    }

    private func thirdOrderUpdate(index: Int, sample: Tensor, noise: Tensor?) -> Tensor {
        let t = SigmaSchedule.alphaSigma(sigmas[index + 1])
        let s0 = SigmaSchedule.alphaSigma(sigmas[index]), s1 = SigmaSchedule.alphaSigma(sigmas[index - 1])
        let s2 = SigmaSchedule.alphaSigma(sigmas[index - 2])
        let lambdaT = lambda(t), lambdaS0 = lambda(s0), lambdaS1 = lambda(s1), lambdaS2 = lambda(s2)
        let m0 = modelOutputs[2]!, m1 = modelOutputs[1]!, m2 = modelOutputs[0]!
        let h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1, h1 = lambdaS1 - lambdaS2
        let r0 = h0 / h, r1 = h1 / h
        let inverseR0 = 1 / r0, inverseR1 = 1 / r1
        let d10 = Elementwise.map(m0, m1) { a, b in inverseR0 * (a - b) }
        let d11 = Elementwise.map(m1, m2) { a, b in inverseR1 * (a - b) }
        let mix = r0 / (r0 + r1), inverseSum = 1 / (r0 + r1)
        let d1 = Elementwise.map(d10, d11) { a, b in a + mix * (a - b) }
        let d2 = Elementwise.map(d10, d11) { a, b in inverseSum * (a - b) }
        if let noise {
            let e2h = Foundation.exp(-2 * h)
            let a = t.sigma / s0.sigma * Foundation.exp(-h)
            let b = t.alpha * (1 - e2h)
            let c = t.alpha * ((1 - e2h) / (-2 * h) + 1)
            let twoH = 2 * h
            let d = t.alpha * (((1 - e2h) - 2 * h) / (twoH * twoH) - 0.5)
            let e = t.sigma * (1 - Foundation.exp(-2 * h)).squareRoot()
            let partial = Elementwise.map(sample, m0, d1, d2) { x, d0, d1, d2 in ((a * x + b * d0) + c * d1) + d * d2 }
            return Elementwise.map(partial, noise) { p, n in p + e * n }
        }
        let eh = Foundation.exp(-h)
        let a = t.sigma / s0.sigma
        let b = t.alpha * (eh - 1)
        let c = t.alpha * ((eh - 1) / h + 1)
        let d = t.alpha * (((eh - 1) + h) / (h * h) - 0.5)
        return Elementwise.map(sample, m0, d1, d2) { x, d0, d1, d2 in ((a * x - b * d0) + c * d1) - d * d2 }
    }

    /// `index_for_timestep`: no match starts at the last step, a repeated match at its second copy.
    private func firstIndex(_ stepIndex: Int) -> Int {
        let timestep = timesteps[stepIndex]
        let matches = timesteps.indices.filter { timesteps[$0] == timestep }
        if matches.isEmpty { return timesteps.count - 1 }
        return matches.count > 1 ? matches[1] : matches[0]
    }

    /// A repeated first timestep (Karras sigmas on a zero-SNR schedule) makes diffusers' counter
    /// read past the last sigma, an IndexError mid-run; refuse it up front.
    private func checkDPMStepIndexRange() throws {
        let begin = firstIndex(0)
        if begin + timesteps.count > sigmas.count - 1 {
            throw SchedulerError.scheduleOutOfRange(
                scheduler: "DPMSolverMultistepScheduler", steps: timesteps.count,
                reason: "the first timestep \(timesteps[0]) repeats, so diffusers' step counter runs past the last sigma")
        }
    }
}
