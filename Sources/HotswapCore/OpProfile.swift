import Foundation

/// Wall time per kernel family, collected only when HOTSWAP_PROFILE=1 (for `hotswap bench`):
/// the answer to "where does a UNet forward spend its time" without an external profiler.
public enum OpProfile {
    public enum Kind: String, CaseIterable, Sendable {
        case conv3x3 = "conv_kxk", conv1x1 = "conv_1x1", linear, attention, norm, elementwise
    }

    public static let enabled = ProcessInfo.processInfo.environment["HOTSWAP_PROFILE"] == "1"
    nonisolated(unsafe) private static var seconds = [Double](repeating: 0, count: Kind.allCases.count)
    nonisolated(unsafe) private static var flops = [Double](repeating: 0, count: Kind.allCases.count)

    @inline(__always)
    public static func measure<T>(_ kind: Kind, flops work: Double = 0, _ body: () -> T) -> T {
        guard enabled else { return body() }
        let start = DispatchTime.now().uptimeNanoseconds
        let result = body()
        let index = Kind.allCases.firstIndex(of: kind)!
        seconds[index] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        flops[index] += work
        return result
    }

    public static func reset() {
        seconds = seconds.map { _ in 0 }
        flops = flops.map { _ in 0 }
    }

    /// kind -> (seconds, GFLOP/s where FLOPs are counted)
    public static func summary() -> [String: [String: Double]] {
        var result: [String: [String: Double]] = [:]
        for (i, kind) in Kind.allCases.enumerated() where seconds[i] > 0 {
            var entry = ["seconds": seconds[i]]
            if flops[i] > 0 { entry["gflops"] = flops[i] / seconds[i] / 1e9 }
            result[kind.rawValue] = entry
        }
        return result
    }
}
