import Foundation

/// Why a model folder or checkpoint could not be loaded. Every case names what it is about.
public enum ModelLoadingError: Error, CustomStringConvertible, Equatable {
    case missingFile(URL)
    case malformedConfig(URL, String)
    case unsupportedConfig(component: String, field: String, value: String)
    /// Strict weight loading: the checkpoint does not match the architecture built from the config.
    case weightMismatch(component: String, missing: [String], unexpected: [String], wrongShape: [String])

    public var description: String {
        switch self {
        case .missingFile(let url):
            return "missing file \(url.path)"
        case .malformedConfig(let url, let reason):
            return "malformed config \(url.path): \(reason)"
        case .unsupportedConfig(let component, let field, let value):
            return "\(component): unsupported config \(field) = \(value)"
        case .weightMismatch(let component, let missing, let unexpected, let wrongShape):
            var parts: [String] = []
            func list(_ names: [String]) -> String {
                names.prefix(12).joined(separator: ", ") + (names.count > 12 ? ", ... (\(names.count) in all)" : "")
            }
            if !missing.isEmpty { parts.append("\(missing.count) missing: \(list(missing))") }
            if !unexpected.isEmpty { parts.append("\(unexpected.count) unexpected: \(list(unexpected))") }
            if !wrongShape.isEmpty { parts.append("\(wrongShape.count) with the wrong shape: \(list(wrongShape))") }
            return "\(component) weights do not match its config: " + parts.joined(separator: "; ")
        }
    }
}

extension ModelLoadingError: LocalizedError {
    public var errorDescription: String? { description }
}
