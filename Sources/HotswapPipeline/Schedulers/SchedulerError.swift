import Foundation

/// Why a scheduler could not be built from a name, a scheduler_config.json and a step count.
public enum SchedulerError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// `--scheduler` value that is no SchedulerName.
    case unknownScheduler(String)
    /// `_class_name` of a scheduler_config.json that Hotswap does not implement.
    case unknownClassName(String)
    /// scheduler_config.json has no `_class_name`, so the folder's default scheduler is unknown.
    case missingClassName
    /// A config key holds a value that this scheduler class does not implement (or diffusers rejects).
    case unsupportedValue(scheduler: String, key: String, value: String)
    /// A config key holds a value that cannot work, with the reason.
    case invalidValue(scheduler: String, key: String, value: String, reason: String)
    /// The inference step count is outside what the scheduler accepts.
    case stepsOutOfRange(scheduler: String, steps: Int, allowed: ClosedRange<Int>, reason: String)
    /// The schedule would index past a table, where diffusers raises an IndexError mid-run.
    case scheduleOutOfRange(scheduler: String, steps: Int, reason: String)

    public var description: String {
        switch self {
        case .unknownScheduler(let name):
            return "unknown scheduler \"\(name)\"; choose one of "
                + SchedulerName.allCases.map(\.rawValue).joined(separator: ", ")
        case .unknownClassName(let name):
            return "scheduler class \"\(name)\" is not supported; supported: "
                + SchedulerName.allCases.map(\.className).joined(separator: ", ")
        case .missingClassName:
            return "scheduler_config.json has no \"_class_name\"; pass a scheduler explicitly"
        case let .unsupportedValue(scheduler, key, value):
            return "\(scheduler): \(key) = \(value) is not supported"
        case let .invalidValue(scheduler, key, value, reason):
            return "\(scheduler): \(key) = \(value) is invalid: \(reason)"
        case let .stepsOutOfRange(scheduler, steps, allowed, reason):
            return "\(scheduler): \(steps) steps is outside \(allowed.lowerBound)...\(allowed.upperBound) (\(reason))"
        case let .scheduleOutOfRange(scheduler, steps, reason):
            return "\(scheduler) with \(steps) steps: \(reason)"
        }
    }

    public var errorDescription: String? { description }
}
