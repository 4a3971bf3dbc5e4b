import Foundation

/// Sigma helpers that Euler and DPM-Solver share: mapping sigmas back to (fractional) training
/// timesteps, and the Karras et al. (2022) noise levels. numpy float64 like diffusers; the log of the
/// training sigmas is taken in float32 because diffusers applies np.log to a float32 array.
enum SigmaSchedule {
    /// `np.log(sigmas)` of the float32 training sigmas.
    static func logSigmas(_ sigmas: [Float]) -> [Float] { sigmas.map { Foundation.log($0) } }

    /// `_sigma_to_t`: the fractional training timestep whose log-sigma interpolates to `sigma`.
    static func sigmaToT(_ sigma: Double, logSigmas: [Float]) -> Double {
        let logSigma = Foundation.log(max(sigma, 1e-10))
        // low_idx: the last index with log_sigmas[i] <= log_sigma (0 when none), at most len - 2.
        var lowIndex = 0
        for (i, value) in logSigmas.enumerated() where logSigma - Double(value) >= 0 { lowIndex = i }
        lowIndex = min(lowIndex, logSigmas.count - 2)
        let low = Double(logSigmas[lowIndex]), high = Double(logSigmas[lowIndex + 1])
        let w = min(max((low - logSigma) / (low - high), 0), 1)
        return (1 - w) * Double(lowIndex) + w * Double(lowIndex + 1)
    }

    /// `_convert_to_karras`: rho = 7 interpolation between sigma_max and sigma_min.
    static func karras(sigmaMin: Double, sigmaMax: Double, count: Int) -> [Double] {
        let rho = 7.0
        let minInvRho = pow(sigmaMin, 1 / rho)
        let maxInvRho = pow(sigmaMax, 1 / rho)
        return NumPy.linspace(0, 1, count: count).map { ramp in pow(maxInvRho + ramp * (minInvRho - maxInvRho), rho) }
    }

    /// `_sigma_to_alpha_sigma_t` of DPM-Solver in float32: alpha_t = 1 / sqrt(sigma^2 + 1).
    static func alphaSigma(_ sigma: Float) -> (alpha: Float, sigma: Float) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }
}
