import Foundation
import HotswapModels

/// betas, alphas and alphas_cumprod as every diffusers scheduler's `__init__` builds them.
///
/// Bit-for-bit with torch on CPU: `torch.linspace` (float32) computes `start + step * i` for the
/// first half and `end - step * (steps - 1 - i)` for the rest, and its AVX2/AVX512 kernels were
/// compiled with FMA contraction, so each value is one fused multiply-add; `torch.cumprod` on
/// float32 accumulates in double and rounds each prefix product to float.
struct NoiseSchedule {
    let betas: [Float]
    let alphasCumprod: [Float]

    /// - Parameter zeroSnrPinsLast: Euler, Euler ancestral and DPM-Solver set the last
    ///   alphas_cumprod to 2**-24 after rescaling (to avoid an infinite sigma); DDIM and LCM do not.
    init(config: SchedulerConfig, scheduler: String, defaults: (betaStart: Double, betaEnd: Double, betaSchedule: String),
         numTrainTimesteps: Int, allowsRescale: Bool, zeroSnrPinsLast: Bool) throws {
        var betas: [Float]
        if let trained = config.trainedBetas {
            guard trained.count == numTrainTimesteps else {
                throw SchedulerError.invalidValue(scheduler: scheduler, key: "trained_betas", value: "\(trained.count) values",
                                                  reason: "num_train_timesteps is \(numTrainTimesteps)")
            }
            betas = trained.map { Float($0) }  // torch.tensor(trained_betas, dtype=torch.float32)
        } else {
            let betaStart = config.betaStart ?? defaults.betaStart
            let betaEnd = config.betaEnd ?? defaults.betaEnd
            switch config.betaSchedule ?? defaults.betaSchedule {
            case "linear":
                betas = NoiseSchedule.torchLinspace(betaStart, betaEnd, count: numTrainTimesteps)
            case "scaled_linear":
                betas = NoiseSchedule.torchLinspace(betaStart.squareRoot(), betaEnd.squareRoot(), count: numTrainTimesteps)
                    .map { $0 * $0 }
            case "squaredcos_cap_v2":
                betas = NoiseSchedule.betasForAlphaBar(count: numTrainTimesteps)
            case let other:
                throw SchedulerError.unsupportedValue(scheduler: scheduler, key: "beta_schedule", value: other)
            }
        }
        let rescale = allowsRescale && (config.rescaleBetasZeroSnr ?? false)
        if rescale { betas = NoiseSchedule.rescaleZeroTerminalSnr(betas) }
        var alphasCumprod = NoiseSchedule.cumprod(betas.map { 1 - $0 })
        if rescale && zeroSnrPinsLast, !alphasCumprod.isEmpty { alphasCumprod[alphasCumprod.count - 1] = 0x1p-24 }
        self.betas = betas
        self.alphasCumprod = alphasCumprod
    }

    /// `alphas_cumprod[timestep]`, with Python's negative indexing (a trailing schedule can end at -1).
    /// Callers check the range when they build the schedule.
    func alphaCumprod(at timestep: Int) -> Float {
        alphasCumprod[timestep < 0 ? timestep + alphasCumprod.count : timestep]
    }

    /// Whether `alphas_cumprod[timestep]` exists in Python.
    func hasIndex(_ timestep: Int) -> Bool {
        (-alphasCumprod.count..<alphasCumprod.count).contains(timestep)
    }

    /// The training noise levels `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5`, in float32.
    var trainingSigmas: [Float] {
        alphasCumprod.map { ((1 - $0) / $0).squareRoot() }
    }

    // MARK: - torch arithmetic

    /// `torch.linspace(start, end, count, dtype=torch.float32)` on CPU.
    static func torchLinspace(_ start: Double, _ end: Double, count: Int) -> [Float] {
        if count <= 0 { return [] }
        let first = Float(start), last = Float(end)
        if count == 1 { return [first] }
        let step = (last - first) / Float(count - 1)
        let halfway = count / 2
        return (0..<count).map { i in
            i < halfway ? first.addingProduct(step, Float(i)) : last.addingProduct(-step, Float(count - i - 1))
        }
    }

    /// `torch.cumprod` of float32 values: double accumulator (acc_type of float on CPU).
    static func cumprod(_ values: [Float]) -> [Float] {
        var product = 1.0
        return values.map { value in
            product *= Double(value)
            return Float(product)
        }
    }

    /// `betas_for_alpha_bar(num_diffusion_timesteps)` with the cosine alpha_bar ("squaredcos_cap_v2"),
    /// computed in Python floats and stored as float32.
    static func betasForAlphaBar(count: Int, maxBeta: Double = 0.999) -> [Float] {
        func alphaBar(_ t: Double) -> Double { pow(cos((t + 0.008) / 1.008 * Double.pi / 2), 2) }
        return (0..<count).map { i in
            let t1 = Double(i) / Double(count), t2 = Double(i + 1) / Double(count)
            return Float(min(1 - alphaBar(t2) / alphaBar(t1), maxBeta))
        }
    }

    /// `rescale_zero_terminal_snr(betas)` (arXiv 2305.08891, Algorithm 1) in torch float32.
    static func rescaleZeroTerminalSnr(_ betas: [Float]) -> [Float] {
        guard let _ = betas.first else { return betas }
        var sqrtBar = cumprod(betas.map { 1 - $0 }).map { $0.squareRoot() }
        let first = sqrtBar[0], last = sqrtBar[sqrtBar.count - 1]
        let scale = first / (first - last)
        sqrtBar = sqrtBar.map { ($0 - last) * scale }
        let bar = sqrtBar.map { $0 * $0 }
        var alphas = [bar[0]]
        for i in 1..<bar.count { alphas.append(bar[i] / bar[i - 1]) }
        return alphas.map { 1 - $0 }
    }
}
