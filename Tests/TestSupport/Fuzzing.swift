// The seeded mutation loop shared by the fuzz suites (adapter files, HTTP requests). They run when
// HOTSWAP_FUZZ_SECONDS is set (Scripts/test.sh runs them in a pass of their own); each prints its
// seed and input count, and HOTSWAP_FUZZ_SEED replays a run.
import Foundation

public struct FuzzBudget: Sendable {
    public let seconds: Double
    public let seed: UInt64

    /// nil when HOTSWAP_FUZZ_SECONDS is not set (the suites are then skipped).
    public static var fromEnvironment: FuzzBudget? {
        let env = ProcessInfo.processInfo.environment
        guard let text = env["HOTSWAP_FUZZ_SECONDS"], let seconds = Double(text), seconds > 0 else { return nil }
        let seed = env["HOTSWAP_FUZZ_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        return FuzzBudget(seconds: seconds, seed: seed)
    }

    public static var enabled: Bool { fromEnvironment != nil }
}

/// SplitMix64: small, fast, and the same sequence for the same seed on every machine.
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Byte-level mutations of a valid input.
public enum Mutator {
    /// Interesting values: IEEE NaN/Inf/huge floats, length-like integers, JSON-breaking bytes.
    static let specials: [[UInt8]] = [
        [0x00, 0x00, 0xC0, 0x7F], [0x00, 0x00, 0x80, 0x7F], [0x00, 0x00, 0x80, 0xFF], [0xFF, 0xFF, 0x7F, 0x7F],
        [0xFF, 0xFF, 0xFF, 0xFF], [0x00, 0x00, 0x00, 0x80], [0x7F], [0x22], [0x5C], [0x7B], [0x7D], [0x00], [0x2D],
        Array("1e999".utf8), Array("-1".utf8), Array("18446744073709551616".utf8), Array("null".utf8), Array("[[[[".utf8),
    ]

    public static func mutate(_ input: [UInt8], using rng: inout SeededGenerator, protectPrefix: Int = 0) -> [UInt8] {
        var bytes = input
        let rounds = Int.random(in: 1...4, using: &rng)
        for _ in 0..<rounds {
            let start = min(protectPrefix, bytes.count)
            let position = bytes.count > start ? Int.random(in: start..<bytes.count, using: &rng) : start
            switch Int.random(in: 0..<7, using: &rng) {
            case 0 where position < bytes.count:
                bytes[position] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            case 1 where position < bytes.count:
                bytes[position] = UInt8.random(in: 0...255, using: &rng)
            case 2:
                let special = specials.randomElement(using: &rng)!
                for (i, b) in special.enumerated() where position + i < bytes.count { bytes[position + i] = b }
            case 3:
                bytes.insert(contentsOf: specials.randomElement(using: &rng)!, at: position)
            case 4 where position < bytes.count:
                bytes.removeSubrange(position..<min(bytes.count, position + Int.random(in: 1...16, using: &rng)))
            case 5:
                bytes = Array(bytes.prefix(position))
            default:
                let length = Int.random(in: 1...64, using: &rng)
                bytes.insert(contentsOf: (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: position)
            }
        }
        return bytes
    }
}
