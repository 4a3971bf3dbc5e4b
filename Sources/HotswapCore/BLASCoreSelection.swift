import CBLAS
import CKernels
import Foundation

/// Chooses OpenBLAS' kernel family from the CPU's features when OpenBLAS' own detection falls
/// short, so that nobody has to know about OPENBLAS_CORETYPE.
///
/// Why: Debian 12's OpenBLAS 0.3.21 does not know newer Xeons (AVX-512 with BF16) and runs its SSE3
/// "Prescott" kernels there: the UNet ran 2.5x slower than with OPENBLAS_CORETYPE=Cooperlake.
/// OpenBLAS fixes its core in the library's constructor, before any of our code runs, and reads the
/// variable only then; so the one way that provably works is to set it and exec the same binary
/// again (same PID, same arguments, same open files). `applyAtStart()` does that, first thing in main.
///
/// `HOTSWAP_BLAS_CORE`: unset (default) chooses only when the user has not set OPENBLAS_CORETYPE;
/// `auto` chooses also over a user's generic OPENBLAS_CORETYPE (what the tests use to start under a
/// generic core on any machine); `off` keeps whatever OpenBLAS picked.
public enum BLASCoreSelection {
    public struct CPUFeatures: OptionSet, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let avx2FMA = CPUFeatures(rawValue: Int32(HS_CPU_AVX2_FMA))
        public static let avx512 = CPUFeatures(rawValue: Int32(HS_CPU_AVX512))
        public static let avx512BF16 = CPUFeatures(rawValue: Int32(HS_CPU_AVX512_BF16))
        public static let amd = CPUFeatures(rawValue: Int32(HS_CPU_VENDOR_AMD))
        public static let intel = CPUFeatures(rawValue: Int32(HS_CPU_VENDOR_INTEL))

        /// This CPU, as cpuid and xgetbv report it.
        public static var current: CPUFeatures { CPUFeatures(rawValue: hs_cpu_features()) }

        public var description: String {
            if contains(.avx512BF16) { return "AVX-512 with BF16" }
            if contains(.avx512) { return "AVX-512" }
            if contains(.avx2FMA) { return "AVX2+FMA" }
            return "no AVX2"
        }
    }

    /// The widest vector ISA a core's kernels use: 3 AVX-512 + BF16, 2 AVX-512, 1 AVX2 + FMA,
    /// 0 anything older or unknown (OpenBLAS' "generic" cores for our purpose).
    public static func tier(of core: String) -> Int {
        switch core.lowercased() {
        case "cooperlake", "sapphirerapids": return 3
        case "skylakex": return 2
        case "haswell", "zen", "excavator": return 1
        default: return 0
        }
    }

    /// The OpenBLAS core whose kernels this CPU runs best, or nil when it has no AVX2.
    public static func preferredCore(for features: CPUFeatures) -> String? {
        if features.contains(.avx512BF16) { return "Cooperlake" }
        if features.contains(.avx512) { return "SkylakeX" }
        if features.contains(.avx2FMA) { return features.contains(.amd) ? "Zen" : "Haswell" }
        return nil
    }

    /// The core to switch to, or nil to keep what OpenBLAS runs.
    /// - reported: the core OpenBLAS picked; userCoreType: OPENBLAS_CORETYPE as the user set it;
    ///   mode: HOTSWAP_BLAS_CORE.
    public static func coreToSwitchTo(reported: String, features: CPUFeatures,
                                      userCoreType: String?, mode: String?) -> String? {
        if mode == "off" { return nil }
        if userCoreType != nil && mode != "auto" { return nil }
        guard let preferred = preferredCore(for: features), tier(of: reported) < tier(of: preferred) else { return nil }
        return preferred
    }

    /// Set across the re-exec: the core OpenBLAS had picked before we chose.
    static let reexecMarker = "HOTSWAP_BLAS_CORE_DETECTED"

    /// How the running core came to be, for logs, `bench` JSON and /metrics.
    public struct Outcome: Sendable, CustomStringConvertible {
        /// The core OpenBLAS runs now.
        public let core: String
        /// "openblas" (its own detection), "user" (OPENBLAS_CORETYPE) or "auto" (chosen here).
        public let selectedBy: String
        /// The core OpenBLAS had detected before an automatic choice (nil otherwise).
        public let detected: String?

        public var description: String {
            switch selectedBy {
            case "auto":
                return "OpenBLAS core \(core), chosen for this CPU (\(CPUFeatures.current)) over the detected \(detected ?? "?")"
                    + " (HOTSWAP_BLAS_CORE=off keeps OpenBLAS' own choice)"
            case "user": return "OpenBLAS core \(core), from OPENBLAS_CORETYPE"
            default: return "OpenBLAS core \(core), detected by OpenBLAS"
            }
        }
    }

    nonisolated(unsafe) private static var recorded: Outcome?

    /// What `applyAtStart()` found (or, if it never ran, OpenBLAS' own state).
    public static var outcome: Outcome {
        if let recorded { return recorded }
        return Outcome(core: BLAS.coreName, selectedBy: getenv("OPENBLAS_CORETYPE") != nil ? "user" : "openblas",
                       detected: nil)
    }

    /// Re-executes this binary with OPENBLAS_CORETYPE set when OpenBLAS runs kernels narrower than
    /// the CPU supports. Returns when nothing is to be done, after the re-exec, or if exec failed.
    public static func applyAtStart() {
        let reported = BLAS.coreName
        if let detectedBefore = getenv(reexecMarker).map({ String(cString: $0) }) {
            unsetenv(reexecMarker)
            recorded = Outcome(core: reported, selectedBy: "auto", detected: detectedBefore)
            return
        }
        let userCoreType = getenv("OPENBLAS_CORETYPE").map { String(cString: $0) }
        let mode = getenv("HOTSWAP_BLAS_CORE").map { String(cString: $0) }
        recorded = Outcome(core: reported, selectedBy: userCoreType != nil ? "user" : "openblas", detected: nil)
        guard let target = coreToSwitchTo(reported: reported, features: .current,
                                          userCoreType: userCoreType, mode: mode) else { return }
        setenv("OPENBLAS_CORETYPE", target, 1)
        setenv(reexecMarker, reported, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // exec failed (no /proc, say): carry on with the kernels we have, and say so.
        let error = String(cString: strerror(errno))
        unsetenv(reexecMarker)
        if let userCoreType { setenv("OPENBLAS_CORETYPE", userCoreType, 1) } else { unsetenv("OPENBLAS_CORETYPE") }
        FileHandle.standardError.write(Data(
            "warning: could not restart with OPENBLAS_CORETYPE=\(target) (\(error)); running \(reported) kernels\n".utf8))
    }
}
