import Foundation
import HotswapStore
import HotswapTestSupport
import Testing
import HotswapCore
import HotswapModels
@testable import HotswapLoRA
import HotswapPipeline

/// Swapping: exact restore of the base weights after many swaps, reuse of an equal set, several
/// adapters, and the cache (hits, LRU eviction by bytes, reload of a changed file).
@Suite struct AdapterSwapTests {
    static let adapters = ["peft_attn", "peft_textmodel", "kohya", "kohya_unet_only", "locon", "old_processor"]

    func makeManager(_ model: String = "sd1-tiny", limit: Int = 64 << 20, mode: LoRAMode = .fuse,
                     directory: URL? = nil) throws -> (StableDiffusionModel, AdapterManager) {
        let m = try StableDiffusionModel(directory: Fixtures.url("models/\(model)"))
        return (m, AdapterManager(model: m, adaptersDirectory: directory ?? Fixtures.url("lora/\(model)"),
                                  cacheLimitBytes: limit, mode: mode))
    }

    /// FNV-1a over the bytes of every base and active weight, by layer path.
    static func weightHashes(_ model: StableDiffusionModel) -> (base: UInt64, active: UInt64, identical: Bool) {
        var base: UInt64 = 0xcbf29ce484222325, active: UInt64 = 0xcbf29ce484222325
        var identical = true
        func mix(_ h: inout UInt64, _ t: Tensor) {
            let bytes = UnsafeRawBufferPointer(start: t.data, count: t.count * 4)
            for b in bytes { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        }
        // Weights and biases (adapters may change both).
        var layers: [(String, Tensor?, Tensor?)] =
            model.unet.linears.map { ("u.\($0.key)", $0.value.baseWeight, $0.value.weight) }
            + model.unet.convolutions.map { ("c.\($0.key)", $0.value.baseWeight, $0.value.weight) }
            + model.textEncoder.linears.map { ("t.\($0.key)", $0.value.baseWeight, $0.value.weight) }
        layers += model.unet.linears.map { ("u.\($0.key).bias", $0.value.baseBias, $0.value.bias) }
            + model.unet.convolutions.map { ("c.\($0.key).bias", $0.value.baseBias, $0.value.bias) }
            + model.textEncoder.linears.map { ("t.\($0.key).bias", $0.value.baseBias, $0.value.bias) }
        for (_, b, w) in layers.sorted(by: { $0.0 < $1.0 }) {
            if let b { mix(&base, b) }
            if let w { mix(&active, w) }
            if b?.storage !== w?.storage { identical = false }
        }
        return (base, active, identical)
    }

    @Test func hundredSwapsLeaveTheBaseBitIdentical() throws {
        let (model, manager) = try makeManager()
        let before = Self.weightHashes(model)
        #expect(before.base == before.active && before.identical)
        var generator = SystemRandomNumberGenerator()
        var outcomes: [CacheOutcome: Int] = [:]
        for i in 0..<100 {
            let count = i % 7 == 0 ? 0 : Int.random(in: 1...2, using: &generator)
            let specs = (0..<count).map { _ in
                AdapterSpec(name: Self.adapters.randomElement(using: &generator)!,
                            scale: [0.5, 1, 1.3, -0.7].randomElement(using: &generator)!)
            }
            let report = try manager.activate(specs)
            outcomes[report.cache, default: 0] += 1
            if !specs.isEmpty { #expect(!Self.weightHashes(model).identical) }
        }
        try manager.activate([])
        #expect(manager.fusedBufferBytes > 0)
        manager.releaseUnusedBuffers()
        #expect(manager.fusedBufferBytes == 0)
        let after = Self.weightHashes(model)
        #expect(after.base == before.base)
        #expect(after.active == before.base)
        #expect(after.identical)
        #expect(manager.active.isEmpty)
        #expect((outcomes[.hit] ?? 0) > 0)
    }

    /// HOTSWAP_RELEASE_FUSED_BASE=1: the fused layers' mapped base pages leave the process after each
    /// fuse; the next fuses read them back, so the fused weights are the same bits as without, and
    /// taking the adapters off restores the base exactly.
    @Test func releasingFusedBasePagesChangesNoBits() throws {
        let specs = [[AdapterSpec(name: "peft_attn", scale: 0.8)], [AdapterSpec(name: "kohya", scale: 1.3)],
                     [AdapterSpec(name: "peft_attn", scale: 0.8), AdapterSpec(name: "locon", scale: 0.5)]]
        func run(release: Bool) throws -> ([UInt64], UInt64, UInt64) {
            var tuning = Tuning.current
            tuning.releaseFusedBasePages = release
            return try Tuning.$current.withValue(tuning) {
                let (model, manager) = try makeManager()
                let base = Self.weightHashes(model).base
                var fused: [UInt64] = []
                for round in 0..<2 {
                    for set in specs {
                        try manager.activate(set)
                        if round == 1 { fused.append(Self.weightHashes(model).active) }
                    }
                }
                try manager.activate([])
                #expect(Self.weightHashes(model).identical)
                return (fused, base, Self.weightHashes(model).active)
            }
        }
        let kept = try run(release: false), released = try run(release: true)
        #expect(released.0 == kept.0)
        #expect(released.1 == kept.1 && released.2 == kept.1)
    }

    /// Sets fused before are kept (within Tuning.fusedSetCacheBytes) and installed again as they were:
    /// the same bits as fusing them anew, across an empty set in between; not kept when they do
    /// not fit, and forgotten with their file.
    @Test func keptFusedSetsAreInstalledBitForBit() throws {
        let a = [AdapterSpec(name: "peft_attn", scale: 0.8)]
        let b = [AdapterSpec(name: "kohya", scale: 1.3), AdapterSpec(name: "locon", scale: 0.5)]
        func run(cacheBytes: Int) throws -> (hashes: [UInt64], reused: [Bool]) {
            var tuning = Tuning.current
            tuning.fusedSetCacheBytes = cacheBytes
            return try Tuning.$current.withValue(tuning) {
                let (model, manager) = try makeManager()
                var hashes: [UInt64] = [], reused: [Bool] = []
                for set in [a, b, a, b, [], a] {
                    let report = try manager.activate(set)
                    hashes.append(Self.weightHashes(model).active)
                    reused.append(report.reusedFusedWeights)
                }
                try manager.activate([])
                #expect(Self.weightHashes(model).identical)
                return (hashes, reused)
            }
        }
        let kept = try run(cacheBytes: 1 << 30), fusedEachTime = try run(cacheBytes: 0)
        #expect(kept.reused == [false, false, true, true, false, true])
        #expect(fusedEachTime.reused == [false, false, false, false, false, false])
        #expect(kept.hashes == fusedEachTime.hashes)
        #expect(kept.hashes[0] == kept.hashes[2] && kept.hashes[1] == kept.hashes[3] && kept.hashes[0] != kept.hashes[1])
        #expect(try run(cacheBytes: 1).reused.allSatisfy { !$0 })  // smaller than any set: nothing kept

        // evict(name:) drops the kept sets built from that file, also when the adapter cache (here:
        // too small to hold any file) no longer has it.
        for limit in [64 << 20, 1024] {
            let (_, manager) = try makeManager(limit: limit)
            try manager.activate(a)
            try manager.activate(b)
            manager.evict(name: "peft_attn")
            let again = try manager.activate(a)
            #expect(again.cache == .miss && !again.reusedFusedWeights, "adapter cache limit \(limit)")
        }
    }

    @Test func runtimeModeLeavesWeightsAlone() throws {
        let (model, manager) = try makeManager(mode: .runtime)
        try manager.activate([AdapterSpec(name: "locon", scale: 0.6), AdapterSpec(name: "peft_attn", scale: 1)])
        #expect(Self.weightHashes(model).identical)
        #expect(model.unet.convolutions.values.contains { !$0.runtimeAdapters.isEmpty })
        try manager.activate([])
        #expect(!model.unet.convolutions.values.contains { !$0.runtimeAdapters.isEmpty })
        #expect(!model.unet.linears.values.contains { !$0.runtimeAdapters.isEmpty })
        #expect(!model.textEncoder.linears.values.contains { !$0.runtimeAdapters.isEmpty })
    }

    @Test func equalSetIsReused() throws {
        let (model, manager) = try makeManager()
        let a = AdapterSpec(name: "kohya", scale: 0.8), b = AdapterSpec(name: "peft_attn", scale: 0.9)
        #expect(try manager.activate([]).cache == .none)
        #expect(try manager.activate([a, b]).cache == .miss)
        let fused = Self.weightHashes(model).active
        let again = try manager.activate([b, a])            // same set, other order
        #expect(again.cache == .reuse && again.applyMs == 0)
        #expect(manager.active == [b, a])
        #expect(try manager.activate([a]).cache == .hit)
        #expect(try manager.activate([b, a]).cache == .hit)
        #expect(Self.weightHashes(model).active == fused)  // canonical order: same bits
        #expect(try manager.activate([a, AdapterSpec(name: "peft_attn", scale: 0.91)]).cache == .hit)
    }

    @Test func cacheEvictsLeastRecentlyUsedByBytes() throws {
        let (_, probe) = try makeManager()
        try probe.activate([AdapterSpec(name: "kohya")])
        let kohyaBytes = probe.cache.bytes
        try probe.activate([AdapterSpec(name: "peft_attn")])
        let peftBytes = probe.cache.bytes - kohyaBytes
        #expect(kohyaBytes > 0 && peftBytes > 0)

        // Room for kohya and peft_attn, not for a third adapter as well.
        let (_, manager) = try makeManager(limit: kohyaBytes + peftBytes + 16)
        #expect(try manager.activate([AdapterSpec(name: "kohya")]).cache == .miss)
        #expect(try manager.activate([AdapterSpec(name: "peft_attn")]).cache == .miss)
        #expect(try manager.activate([AdapterSpec(name: "kohya")]).cache == .hit)      // kohya now most recent
        #expect(try manager.activate([AdapterSpec(name: "old_processor")]).cache == .miss)   // evicts peft_attn
        #expect(manager.cache.evictions >= 1)
        #expect(manager.cache.bytes <= manager.cache.limitBytes)
        #expect(try manager.activate([AdapterSpec(name: "peft_attn")]).cache == .miss)
        #expect(manager.cache.hits == 1)

        // A limit below one adapter: nothing is kept, every swap reads the file.
        let (_, tiny) = try makeManager(limit: 1024)
        #expect(try tiny.activate([AdapterSpec(name: "kohya")]).cache == .miss)
        #expect(try tiny.activate([AdapterSpec(name: "peft_attn")]).cache == .miss)
        #expect(try tiny.activate([AdapterSpec(name: "kohya")]).cache == .miss)
        #expect(tiny.cache.count == 0)

        // evict(name:) forgets a file.
        try manager.activate([])
        #expect(try manager.activate([AdapterSpec(name: "peft_attn")]).cache == .hit)
        manager.evict(name: "peft_attn")
        try manager.activate([])
        #expect(try manager.activate([AdapterSpec(name: "peft_attn")]).cache == .miss)
    }

    @Test func changedFileIsReloaded() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-lora-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("style.safetensors")
        try FileManager.default.copyItem(at: Fixtures.url("lora/sd1-tiny/kohya.safetensors"), to: file)
        let (model, manager) = try makeManager(directory: dir)
        #expect(try manager.activate([AdapterSpec(name: "style")]).cache == .miss)
        let first = Self.weightHashes(model).active
        try manager.activate([])
        #expect(try manager.activate([AdapterSpec(name: "style")]).cache == .hit)
        // Replace the file with other weights: the equal set is not reused, the file is read again.
        try FileManager.default.removeItem(at: file)
        try FileManager.default.copyItem(at: Fixtures.url("lora/sd1-tiny/kohya_unet_only.safetensors"), to: file)
        let report = try manager.activate([AdapterSpec(name: "style")])
        #expect(report.cache == .miss)
        #expect(Self.weightHashes(model).active != first)
    }

    @Test func hashesAreA1111Addnet() throws {
        struct Adapter: Decodable { let file: String; let a1111_hash: String }
        struct Manifest: Decodable { let adapters: [String: Adapter] }
        let manifest: Manifest = try Fixtures.json("reference/lora/manifest.json")
        let (_, manager) = try makeManager()
        for name in ["kohya", "peft_attn"] {
            let expected = try #require(manifest.adapters["sd1-tiny/\(name)"]).a1111_hash
            try manager.activate([AdapterSpec(name: name, scale: 0.5)])
            let hashes = manager.loraHashes()
            #expect(hashes.count == 1 && hashes[0].name == name && hashes[0].hash == String(expected.prefix(12)))
        }
    }
}
