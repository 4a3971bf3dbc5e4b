import Foundation

/// Tuning knobs read from the environment (HOTSWAP_*), for benchmarks and tests: one place that
/// parses them, so a malformed value falls back to the default the same way everywhere.
public enum EnvironmentSetting {
    /// The variable's integer value, or `fallback` when it is unset, not an integer, or not accepted.
    public static func integer(_ name: String, default fallback: Int, accept: (Int) -> Bool = { _ in true }) -> Int {
        guard let text = ProcessInfo.processInfo.environment[name], let value = Int(text), accept(value) else {
            return fallback
        }
        return value
    }
}
