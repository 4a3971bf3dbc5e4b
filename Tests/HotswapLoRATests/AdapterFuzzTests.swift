import Foundation
import HotswapModels
import HotswapPipeline
import HotswapStore
import HotswapTestSupport
import Testing
@testable import HotswapLoRA

/// Mutated adapter files (header and data bytes, NaN/Inf patterns, truncation) through the loader
/// AND through apply + render on the tiny fixture model: every mutant is either refused with a
/// LoRAError or renders an image (or a typed non-finite-image error); never a crash. The base
/// weights are bit-identical at the end.
@Suite(.enabled(if: FuzzBudget.enabled, "set HOTSWAP_FUZZ_SECONDS to run the fuzzers"))
struct AdapterFuzzTests {
    @Test func mutatedAdaptersNeverCrashApplyOrRender() throws {
        let budget = try #require(FuzzBudget.fromEnvironment)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let (renderer, _) = try Renderer.load(modelDirectory: Fixtures.url("models/sd1-tiny"),
                                              adapters: .init(directory: directory, allowsPaths: false, cacheLimitBytes: 8 << 20))
        let before = AdapterSwapTests.weightHashes(renderer.model)
        let seeds = try (["kohya", "peft_attn", "locon", "legacy", "kohya_varalpha", "old_processor"].map { "lora/sd1-tiny/\($0)" }
                         + ["loha", "loha_tucker", "lokr", "lokr_tucker", "locon_tucker", "dora", "peft_dora", "peft_bias",
                            "kohya_bias", "full_diff"].map { "lycoris/sd1-tiny/\($0)" }).map {
            [UInt8](try Data(contentsOf: Fixtures.url("\($0).safetensors")))
        }
        var rng = SeededGenerator(seed: budget.seed)
        var counts = (inputs: 0, refused: 0, rendered: 0, nonFinite: 0)
        let clock = Stopwatch()
        while clock.elapsedMs < budget.seconds * 1000 {
            let seed = seeds.randomElement(using: &rng)!
            // Half the mutants keep their header intact, so the data (values) gets fuzzed too.
            let headerEnd = 8 + Int(seed.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) })
            let mutant = Mutator.mutate(seed, using: &rng, protectPrefix: Bool.random(using: &rng) ? headerEnd : 0)
            let name = "m\(counts.inputs % 4)"
            try Data(mutant).write(to: directory.appendingPathComponent("\(name).safetensors"))
            renderer.adapters.evict(name: name)
            counts.inputs += 1
            let request = GenerationRequest(prompt: "a shape", steps: 1, guidance: 2, seed: 1, width: 32, height: 32,
                                            adapters: [AdapterSpec(name: name, scale: Float.random(in: -2...2, using: &rng))])
            do {
                let resolved = try renderer.prepare(request)
                var record = RequestRecord()
                _ = try renderer.render(resolved, record: &record)
                counts.rendered += 1
            } catch is LoRAError {
                counts.refused += 1
            } catch is NonFiniteImageError {
                counts.nonFinite += 1
            } catch {
                Issue.record("mutant \(counts.inputs) (seed \(budget.seed)): unexpected error \(type(of: error)): \(error)")
            }
        }
        try renderer.adapters.activate([])
        let after = AdapterSwapTests.weightHashes(renderer.model)
        #expect(after.base == before.base && after.identical)
        print("adapter fuzz: seed \(budget.seed), \(counts.inputs) inputs in \(Int(budget.seconds)) s: \(counts.refused) refused, \(counts.rendered) rendered, \(counts.nonFinite) non-finite images")
        #expect(counts.inputs > 0 && counts.refused > 0)
    }
}
