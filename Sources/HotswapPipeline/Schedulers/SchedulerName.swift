import HotswapModels
/// The schedulers `hotswap render --scheduler` accepts, each one a diffusers class built with
/// `Class.from_config(folder_config)` (dpmpp-2m-karras adds `use_karras_sigmas=True`).
public enum SchedulerName: String, CaseIterable, Sendable {
    case euler
    case eulerAncestral = "euler-a"
    case ddim
    case dpmpp2m = "dpmpp-2m"
    case dpmpp2mKarras = "dpmpp-2m-karras"
    case lcm
    case pndm

    /// Parses a `--scheduler` value.
    public static func parse(_ text: String) throws -> SchedulerName {
        guard let name = SchedulerName(rawValue: text) else { throw SchedulerError.unknownScheduler(text) }
        return name
    }

    /// The scheduler a diffusers pipeline uses for a folder whose scheduler_config.json names
    /// `className` (its `_class_name`). DPMSolverMultistepScheduler maps to dpmpp-2m, which still
    /// honours a `use_karras_sigmas` written in that config.
    public init(className: String) throws {
        guard let name = SchedulerName.allCases.first(where: { $0.className == className && $0 != .dpmpp2mKarras })
        else { throw SchedulerError.unknownClassName(className) }
        self = name
    }

    /// The folder's own scheduler, from the config's `_class_name`.
    public init(config: SchedulerConfig) throws {
        guard let className = config.className else { throw SchedulerError.missingClassName }
        try self.init(className: className)
    }

    /// The diffusers class this name builds.
    public var className: String {
        switch self {
        case .euler: return "EulerDiscreteScheduler"
        case .eulerAncestral: return "EulerAncestralDiscreteScheduler"
        case .ddim: return "DDIMScheduler"
        case .dpmpp2m, .dpmpp2mKarras: return "DPMSolverMultistepScheduler"
        case .lcm: return "LCMScheduler"
        case .pndm: return "PNDMScheduler"
        }
    }

    /// The AUTOMATIC1111 web UI's name for the same sampler (PNDM with skip_prk_steps is PLMS).
    public var samplerLabel: String {
        switch self {
        case .euler: return "Euler"
        case .eulerAncestral: return "Euler a"
        case .ddim: return "DDIM"
        case .dpmpp2m: return "DPM++ 2M"
        case .dpmpp2mKarras: return "DPM++ 2M Karras"
        case .lcm: return "LCM"
        case .pndm: return "PLMS"
        }
    }
}
