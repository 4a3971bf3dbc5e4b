import Foundation

/// One txt2img request, validated before any work is done. Defaults follow
/// StableDiffusionPipeline.__call__ (50 steps, guidance 7.5, the model's native size).
public struct GenerationRequest: Sendable, Equatable {
    public var prompt: String
    public var negativePrompt: String?
    public var steps: Int = 50
    public var guidance: Float = 7.5
    public var seed: UInt64
    /// nil: the model's default size (unet sample_size x vae scale factor).
    public var width: Int?
    public var height: Int?
    /// nil: the scheduler the model folder ships with.
    public var scheduler: SchedulerName?
    public var clipSkip: Int?

    public init(prompt: String, negativePrompt: String? = nil, steps: Int = 50, guidance: Float = 7.5,
                seed: UInt64 = TorchGenerator.randomSeed(), width: Int? = nil, height: Int? = nil,
                scheduler: SchedulerName? = nil, clipSkip: Int? = nil) {
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.steps = steps
        self.guidance = guidance
        self.seed = seed
        self.width = width
        self.height = height
        self.scheduler = scheduler
        self.clipSkip = clipSkip
    }

    public static let stepRange = 1...1000

    /// The checks that need no model: steps in range, sizes positive multiples of 8 (as
    /// StableDiffusionPipeline.check_inputs). The CLI runs them before loading anything.
    public static func validate(steps: Int, width: Int?, height: Int?) throws {
        guard stepRange.contains(steps) else { throw GenerationError.stepsOutOfRange(steps) }
        for (field, value) in [("width", width), ("height", height)] {
            if let value, value <= 0 || value % 8 != 0 {
                throw GenerationError.invalidSize(field: field, value: value, multiple: 8)
            }
        }
    }
}

/// Why a request cannot run; each case names the field.
public enum GenerationError: Error, CustomStringConvertible, Equatable {
    case invalidSize(field: String, value: Int, multiple: Int)
    case stepsOutOfRange(Int)
    case invalidGuidance(Float)
    case invalidClipSkip(Int, layers: Int)
    case noScheduler(className: String?)
    case cancelled

    public var description: String {
        switch self {
        case .invalidSize(let field, let value, let multiple):
            return "\(field) must be a positive multiple of \(multiple), got \(value)"
        case .stepsOutOfRange(let steps):
            return "steps must be in \(GenerationRequest.stepRange.lowerBound)...\(GenerationRequest.stepRange.upperBound), got \(steps)"
        case .invalidGuidance(let guidance):
            return "guidance must be a finite number >= 0, got \(guidance)"
        case .invalidClipSkip(let value, let layers):
            return "clip_skip must be in 0..<\(layers) for a \(layers)-layer text encoder, got \(value)"
        case .noScheduler(let className):
            return "the model's scheduler \(className ?? "(none)") is not implemented; choose one with --scheduler (\(SchedulerName.allCases.map(\.rawValue).joined(separator: ", ")))"
        case .cancelled:
            return "cancelled"
        }
    }
}

extension GenerationError: LocalizedError {
    public var errorDescription: String? { description }
}
