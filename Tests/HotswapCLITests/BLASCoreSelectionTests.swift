import Foundation
import HotswapTestSupport
import Testing

/// The binary starts on the widest OpenBLAS kernels this CPU runs, even when OpenBLAS itself
/// starts on a generic core (as Debian 12's 0.3.21 does on AVX-512 Xeons). On any machine, a
/// generic start is forced with OPENBLAS_CORETYPE=Prescott; HOTSWAP_BLAS_CORE=auto tells the
/// binary to choose over it, as it does by default when OpenBLAS detected the generic core itself.
@Suite struct BLASCoreSelectionTests {
    static let model = Fixtures.url("models/sd1-tiny").path

    func benchJSON(_ environment: [String: String?]) throws -> [String: Any] {
        let result = try HotswapProcess.run(["bench", "text", "--model", Self.model, "--runs", "1"],
                                            environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        let data = Data(result.stdout.utf8)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(result.stdout)")
    }

    /// What the CPU supports, read from /proc/cpuinfo (independently of the binary's own cpuid probe).
    static var cpuHasAVX2: Bool {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = info.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
        let set = Set(flags.split(separator: " "))
        return set.contains("avx2") && set.contains("fma")
    }

    static let simdCores: Set<String> = ["Haswell", "Zen", "Excavator", "SkylakeX", "Cooperlake", "SapphireRapids"]

    @Test func genericCoreIsReplacedBySIMDCore() throws {
        let json = try benchJSON(["OPENBLAS_CORETYPE": "Prescott", "HOTSWAP_BLAS_CORE": "auto"])
        let core = try #require(json["blas_core"] as? String)
        if Self.cpuHasAVX2 {
            #expect(Self.simdCores.contains(core), "still on \(core)")
            #expect(json["blas_core_selected_by"] as? String == "auto")
            #expect(json["blas_core_detected"] as? String == "Prescott")
        } else {
            #expect(core == "Prescott")
        }
    }

    @Test func renderSaysWhichCoreItChose() throws {
        guard Self.cpuHasAVX2 else { return }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-blas-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try HotswapProcess.run(
            ["render", "--model", Self.model, "--prompt", "x", "--steps", "1", "--seed", "1",
             "--out", dir.appendingPathComponent("o.png").path],
            environment: ["OPENBLAS_CORETYPE": "Prescott", "HOTSWAP_BLAS_CORE": "auto"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("chosen for this CPU") && result.stderr.contains("over the detected Prescott"),
                "\(result.stderr)")
    }

    @Test func usersCoreTypeIsKept() throws {
        let json = try benchJSON(["OPENBLAS_CORETYPE": "Prescott", "HOTSWAP_BLAS_CORE": nil])
        #expect(json["blas_core"] as? String == "Prescott")
        #expect(json["blas_core_selected_by"] as? String == "user")
    }

    @Test func offKeepsOpenBLASChoice() throws {
        let json = try benchJSON(["OPENBLAS_CORETYPE": "Prescott", "HOTSWAP_BLAS_CORE": "off"])
        #expect(json["blas_core"] as? String == "Prescott")
    }
}
