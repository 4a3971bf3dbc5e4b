import Foundation
import HotswapModels

/// The keys of a diffusers scheduler_config.json that Hotswap's schedulers read.
///
/// Every field is optional on purpose: diffusers' `Class.from_config(file)` takes a value from the
/// file when the key is there and the *class's own* `__init__` default otherwise, and those defaults
/// differ between classes (EulerDiscreteScheduler's timestep_spacing is "linspace", DDIMScheduler's
/// "leading"). Each scheduler resolves the missing keys with its own defaults. A JSON `null` counts
/// as absent. Keys that no Hotswap scheduler reads are ignored, as diffusers ignores keys that a
/// class does not take.
public struct SchedulerConfig: Decodable, Equatable, Sendable {
    public var className: String?
    public var numTrainTimesteps: Int?
    public var betaStart: Double?
    public var betaEnd: Double?
    public var betaSchedule: String?
    public var trainedBetas: [Double]?
    public var predictionType: String?
    public var timestepSpacing: String?
    public var timestepType: String?
    public var stepsOffset: Int?
    public var clipSample: Bool?
    public var clipSampleRange: Double?
    public var setAlphaToOne: Bool?
    public var thresholding: Bool?
    public var rescaleBetasZeroSnr: Bool?
    public var interpolationType: String?
    public var useKarrasSigmas: Bool?
    public var useExponentialSigmas: Bool?
    public var useBetaSigmas: Bool?
    public var useLuLambdas: Bool?
    public var useFlowSigmas: Bool?
    public var sigmaMin: Double?
    public var sigmaMax: Double?
    public var finalSigmasType: String?
    public var solverOrder: Int?
    public var algorithmType: String?
    public var solverType: String?
    public var lowerOrderFinal: Bool?
    public var eulerAtFinal: Bool?
    public var lambdaMinClipped: Double?
    public var varianceType: String?
    public var originalInferenceSteps: Int?
    public var timestepScaling: Double?
    public var skipPrkSteps: Bool?

    enum CodingKeys: String, CodingKey {
        case className = "_class_name"
        case numTrainTimesteps = "num_train_timesteps"
        case betaStart = "beta_start"
        case betaEnd = "beta_end"
        case betaSchedule = "beta_schedule"
        case trainedBetas = "trained_betas"
        case predictionType = "prediction_type"
        case timestepSpacing = "timestep_spacing"
        case timestepType = "timestep_type"
        case stepsOffset = "steps_offset"
        case clipSample = "clip_sample"
        case clipSampleRange = "clip_sample_range"
        case setAlphaToOne = "set_alpha_to_one"
        case thresholding
        case rescaleBetasZeroSnr = "rescale_betas_zero_snr"
        case interpolationType = "interpolation_type"
        case useKarrasSigmas = "use_karras_sigmas"
        case useExponentialSigmas = "use_exponential_sigmas"
        case useBetaSigmas = "use_beta_sigmas"
        case useLuLambdas = "use_lu_lambdas"
        case useFlowSigmas = "use_flow_sigmas"
        case sigmaMin = "sigma_min"
        case sigmaMax = "sigma_max"
        case finalSigmasType = "final_sigmas_type"
        case solverOrder = "solver_order"
        case algorithmType = "algorithm_type"
        case solverType = "solver_type"
        case lowerOrderFinal = "lower_order_final"
        case eulerAtFinal = "euler_at_final"
        case lambdaMinClipped = "lambda_min_clipped"
        case varianceType = "variance_type"
        case originalInferenceSteps = "original_inference_steps"
        case timestepScaling = "timestep_scaling"
        case skipPrkSteps = "skip_prk_steps"
    }

    /// An empty config: every key takes the scheduler class's default.
    public init() {}

    /// Parses scheduler_config.json. Python's json module writes `-Infinity` (lambda_min_clipped),
    /// which strict JSON rejects, so the file is read as JSON5.
    public static func decode(from data: Data) throws -> SchedulerConfig {
        let decoder = JSONDecoder()
        decoder.allowsJSON5 = true
        return try decoder.decode(SchedulerConfig.self, from: data)
    }

    public static func load(contentsOf url: URL) throws -> SchedulerConfig {
        try decode(from: Data(contentsOf: url))
    }
}
