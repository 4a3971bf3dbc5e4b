import HotswapCore
import Testing

/// The pure decision behind BLASCoreSelection.applyAtStart (the re-exec itself is exercised by
/// HotswapCLITests.BLASCoreSelectionTests).
@Suite struct BLASCoreChoiceTests {
    typealias F = BLASCoreSelection.CPUFeatures
    let xeonBF16: F = [.avx2FMA, .avx512, .avx512BF16, .intel]
    let skylake: F = [.avx2FMA, .avx512, .intel]
    let zen3: F = [.avx2FMA, .amd]
    let zen4: F = [.avx2FMA, .avx512, .avx512BF16, .amd]
    let old: F = [.intel]

    @Test func preferredCoreFollowsTheWidestISA() {
        #expect(BLASCoreSelection.preferredCore(for: xeonBF16) == "Cooperlake")
        #expect(BLASCoreSelection.preferredCore(for: skylake) == "SkylakeX")
        #expect(BLASCoreSelection.preferredCore(for: zen3) == "Zen")
        #expect(BLASCoreSelection.preferredCore(for: [.avx2FMA, .intel]) == "Haswell")
        #expect(BLASCoreSelection.preferredCore(for: old) == nil)
    }

    @Test func switchesOnlyUpward() {
        func choice(_ reported: String, _ f: F, user: String? = nil, mode: String? = nil) -> String? {
            BLASCoreSelection.coreToSwitchTo(reported: reported, features: f, userCoreType: user, mode: mode)
        }
        #expect(choice("Prescott", xeonBF16) == "Cooperlake")
        #expect(choice("Sandybridge", skylake) == "SkylakeX")
        #expect(choice("Haswell", zen4) == "Cooperlake")       // AVX2 kernels on an AVX-512 CPU
        #expect(choice("Zen", zen3) == nil)                    // already right
        #expect(choice("Cooperlake", xeonBF16) == nil)
        #expect(choice("SkylakeX", zen3) == nil)               // never downward
        #expect(choice("Prescott", old) == nil)                // nothing better to run
        #expect(choice("Prescott", xeonBF16, user: "Prescott") == nil)            // the user's choice
        #expect(choice("Prescott", xeonBF16, user: "Prescott", mode: "auto") == "Cooperlake")
        #expect(choice("Prescott", xeonBF16, mode: "off") == nil)
    }

    @Test func tiers() {
        #expect(BLASCoreSelection.tier(of: "Prescott") == 0)
        #expect(BLASCoreSelection.tier(of: "Unknown") == 0)
        #expect(BLASCoreSelection.tier(of: "zen") == 1)
        #expect(BLASCoreSelection.tier(of: "SkylakeX") == 2)
        #expect(BLASCoreSelection.tier(of: "COOPERLAKE") == 3)
    }
}
