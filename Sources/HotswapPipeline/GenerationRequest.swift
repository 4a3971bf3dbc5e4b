import Foundation
import HotswapLoRA
import HotswapModels

/// One txt2img request, from the CLI or any HTTP API. Defaults follow
/// StableDiffusionPipeline.__call__ (50 steps, guidance 7.5, the model's native size).
///
/// Every check of a request lives here and in `StableDiffusionPipeline.resolve` (the checks that
/// need the model), so `hotswap render` and the server refuse the same things with the same message.
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
    /// LoRA adapters to activate before generating, in request order.
    public var adapters: [AdapterSpec]
    /// The prompt as the client wrote it, when it differs from `prompt` (A1111's `<lora:...>`
    /// tags are taken out of the encoded text but stay in the infotext, as in A1111).
    public var writtenPrompt: String?

    public init(prompt: String, negativePrompt: String? = nil, steps: Int = 50, guidance: Float = 7.5,
                seed: UInt64 = TorchGenerator.randomSeed(), width: Int? = nil, height: Int? = nil,
                scheduler: SchedulerName? = nil, clipSkip: Int? = nil, adapters: [AdapterSpec] = []) {
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.steps = steps
        self.guidance = guidance
        self.seed = seed
        self.width = width
        self.height = height
        self.scheduler = scheduler
        self.clipSkip = clipSkip
        self.adapters = adapters
    }

    /// The adapter set as the infotext and timing rows write it: `name:scale` joined by ", ".
    public var adaptersLabel: String { adapters.map(\.displayDescription).joined(separator: ", ") }

    /// The checks that need no model (the CLI runs them before loading anything): steps, sizes
    /// (positive multiples of 8, as StableDiffusionPipeline.check_inputs, and within the limits),
    /// guidance, clip skip, text that a PNG text chunk can carry, adapter scales and count.
    public func validate(limits: RequestLimits) throws {
        guard (1...limits.maxSteps).contains(steps) else { throw GenerationError.stepsOutOfRange(steps, max: limits.maxSteps) }
        for (field, value) in [("width", width), ("height", height)] {
            if let value, value <= 0 || value % 8 != 0 || value > RequestLimits.maxSide {
                throw GenerationError.invalidSize(field: field, value: value, multiple: 8)
            }
        }
        if let width, let height { try limits.checkPixels(width: width, height: height, field: "width") }
        guard guidance.isFinite, (0...RequestLimits.maxGuidance).contains(guidance) else {
            throw GenerationError.invalidGuidance(guidance)
        }
        if let clipSkip, clipSkip < 0 { throw GenerationError.invalidClipSkip(clipSkip, layers: nil) }
        for (field, text) in [("prompt", writtenPrompt ?? prompt), ("negative_prompt", negativePrompt ?? "")] {
            // The infotext goes into a PNG text chunk, which cannot hold NUL.
            if text.unicodeScalars.contains("\u{0}") { throw GenerationError.invalidText(field: field, reason: "contains a NUL character") }
            if text.utf8.count > RequestLimits.maxTextBytes {
                throw GenerationError.invalidText(field: field, reason: "is longer than \(RequestLimits.maxTextBytes / 1024) KiB")
            }
        }
        guard adapters.count <= RequestLimits.maxAdapters else { throw GenerationError.tooManyAdapters(adapters.count) }
        for (i, adapter) in adapters.enumerated() {
            guard adapter.scale.isFinite, abs(adapter.scale) <= RequestLimits.maxAdapterScale else {
                throw GenerationError.invalidAdapterScale(index: i, name: adapter.name, scale: adapter.scale)
            }
            if adapters[..<i].contains(where: { $0.name == adapter.name }) {
                throw GenerationError.duplicateAdapter(index: i, name: adapter.name)
            }
        }
    }
}

/// What a model decides about a request: its defaults and the limits of its parts.
public struct ModelFacts: Sendable {
    /// diffusers' default size: unet.config.sample_size * vae_scale_factor (512 for SD1.5).
    public var defaultImageSize: Int
    public var textEncoderLayers: Int
    /// The folder's scheduler config (before StableDiffusionPipeline's adjustments).
    public var schedulerConfig: SchedulerConfig
    /// The folder's own scheduler, if Hotswap implements it.
    public var defaultScheduler: SchedulerName? { schedulerConfig.className.flatMap { try? SchedulerName(className: $0) } }

    public init(defaultImageSize: Int, textEncoderLayers: Int, schedulerConfig: SchedulerConfig) {
        self.defaultImageSize = defaultImageSize
        self.textEncoderLayers = textEncoderLayers
        self.schedulerConfig = schedulerConfig
    }

    public init(_ model: StableDiffusionModel) {
        // SDXL skips layers in both encoders: the shallower one bounds clip_skip.
        let layers = min(model.textEncoder.config.numHiddenLayers,
                         model.secondText?.encoder.config.numHiddenLayers ?? .max)
        self.init(defaultImageSize: model.defaultImageSize, textEncoderLayers: layers, schedulerConfig: model.schedulerConfig)
    }

    /// StableDiffusionPipeline.__init__ normalizes its own scheduler's config (steps_offset 1,
    /// clip_sample false); a scheduler chosen by name is built from_config of that config.
    func schedulerConfig(for request: GenerationRequest) -> SchedulerConfig {
        let ownScheduler = request.scheduler == nil || request.scheduler == defaultScheduler
        return schedulerConfig.stableDiffusionPipelineAdjusted(ownScheduler: ownScheduler ? defaultScheduler : nil)
    }
}

/// A request with the model's defaults filled in, checked in full.
public struct ResolvedRequest: Sendable, Equatable {
    public var request: GenerationRequest
    public var width: Int
    public var height: Int
    public var scheduler: SchedulerName
}

extension GenerationRequest {
    /// `validate`, then what needs the model: the pixel limit at the default size, clip skip
    /// against the text encoder's depth, a scheduler to run, and the scheduler's own limits (it is
    /// built once: PNDM's minimum steps, LCM's maximum, ...). Throws GenerationError naming the field.
    public func resolve(for model: ModelFacts, limits: RequestLimits) throws -> ResolvedRequest {
        try validate(limits: limits)
        let width = self.width ?? model.defaultImageSize
        let height = self.height ?? model.defaultImageSize
        try limits.checkPixels(width: width, height: height, field: self.width == nil && self.height != nil ? "height" : "width")
        if let clipSkip, clipSkip >= model.textEncoderLayers {
            throw GenerationError.invalidClipSkip(clipSkip, layers: model.textEncoderLayers)
        }
        guard let scheduler = self.scheduler ?? model.defaultScheduler else {
            throw GenerationError.noScheduler(className: model.schedulerConfig.className)
        }
        do {
            _ = try makeScheduler(scheduler, config: model.schedulerConfig(for: self), steps: steps)
        } catch let error as SchedulerError {
            let field: String
            switch error {
            case .stepsOutOfRange, .scheduleOutOfRange: field = "steps"
            default: field = "scheduler"
            }
            throw GenerationError.schedulerRefused(field: field, message: error.description)
        }
        return ResolvedRequest(request: self, width: width, height: height, scheduler: scheduler)
    }
}

/// What a caller allows on top of the fixed rules (the server's --max-steps / --max-pixels; the
/// CLI allows the most).
public struct RequestLimits: Sendable, Equatable {
    public var maxSteps: Int
    /// Largest width x height; nil: no limit beyond `maxSide`.
    public var maxPixels: Int?

    public init(maxSteps: Int = 1000, maxPixels: Int? = nil) {
        self.maxSteps = maxSteps
        self.maxPixels = maxPixels
    }

    public static let cli = RequestLimits()
    public static let maxSide = 8192
    public static let maxGuidance: Float = 100
    public static let maxTextBytes = 16 * 1024
    public static let maxAdapters = 8
    public static let maxAdapterScale = AdapterSpec.maxScale

    func checkPixels(width: Int, height: Int, field: String) throws {
        if let maxPixels, width * height > maxPixels {
            throw GenerationError.tooManyPixels(field: field, width: width, height: height, limit: maxPixels)
        }
    }
}

/// Why a request cannot run; each case names the request field it is about.
public enum GenerationError: Error, CustomStringConvertible, Equatable {
    case invalidSize(field: String, value: Int, multiple: Int)
    case tooManyPixels(field: String, width: Int, height: Int, limit: Int)
    case stepsOutOfRange(Int, max: Int)
    case invalidGuidance(Float)
    case invalidClipSkip(Int, layers: Int?)
    case invalidText(field: String, reason: String)
    case tooManyAdapters(Int)
    case invalidAdapterScale(index: Int, name: String, scale: Float)
    case duplicateAdapter(index: Int, name: String)
    case noScheduler(className: String?)
    /// The scheduler refuses these settings (PNDM with fewer than 4 steps, LCM past its
    /// original steps, ...): its own message.
    case schedulerRefused(field: String, message: String)
    case cancelled

    public var description: String {
        switch self {
        case .invalidSize(let field, let value, let multiple):
            return "\(field) must be a positive multiple of \(multiple) (at most \(RequestLimits.maxSide)), got \(value)"
        case .tooManyPixels(_, let width, let height, let limit):
            return "width x height = \(width)x\(height) = \(width * height) pixels is over the limit of \(limit)"
        case .stepsOutOfRange(let steps, let max):
            return "steps must be in 1...\(max), got \(steps)"
        case .invalidGuidance(let guidance):
            return "guidance must be a number in 0...\(Int(RequestLimits.maxGuidance)), got \(guidance)"
        case .invalidClipSkip(let value, let layers):
            if let layers { return "clip_skip must be in 0..<\(layers) for a \(layers)-layer text encoder, got \(value)" }
            return "clip_skip must be a non-negative integer, got \(value)"
        case .invalidText(let field, let reason):
            return "\(field) \(reason)"
        case .tooManyAdapters(let count):
            return "at most \(RequestLimits.maxAdapters) adapters per request, got \(count)"
        case .invalidAdapterScale(_, let name, let scale):
            return "the scale of adapter '\(name)' must be a number in -\(Int(RequestLimits.maxAdapterScale))...\(Int(RequestLimits.maxAdapterScale)), got \(scale)"
        case .duplicateAdapter(_, let name):
            return "adapter '\(name)' is listed twice"
        case .noScheduler(let className):
            return "the model's scheduler \(className ?? "(none)") is not implemented; choose one with --scheduler (\(SchedulerName.allCases.map(\.rawValue).joined(separator: ", ")))"
        case .schedulerRefused(_, let message):
            return message
        case .cancelled:
            return "cancelled"
        }
    }

    /// The request field the error is about (as the HTTP API names it).
    public var field: String {
        switch self {
        case .invalidSize(let field, _, _), .tooManyPixels(let field, _, _, _), .invalidText(let field, _),
             .schedulerRefused(let field, _):
            return field
        case .stepsOutOfRange: return "steps"
        case .invalidGuidance: return "guidance"
        case .invalidClipSkip: return "clip_skip"
        case .tooManyAdapters: return "adapters"
        case .invalidAdapterScale(let index, _, _): return "adapters[\(index)].scale"
        case .duplicateAdapter(let index, _): return "adapters[\(index)].name"
        case .noScheduler: return "scheduler"
        case .cancelled: return ""
        }
    }
}

extension GenerationError: LocalizedError {
    public var errorDescription: String? { description }
}
