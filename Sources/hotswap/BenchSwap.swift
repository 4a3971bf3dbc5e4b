import ArgumentParser
import Foundation
import HotswapCore
import HotswapLoRA
import HotswapModels
import HotswapPipeline
import HotswapStore

/// `hotswap bench swap`: adapter swap times on one model; prints one JSON object of medians.
struct SwapBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "swap",
        abstract: "LoRA swap times: cold (file read + parse + apply), cache hit (unload + apply), unload, apply, hit after a render's page release, hit with every swap fused; medians in ms.")
    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .customLong("adapter"), help: "Adapter file or NAME[:SCALE] (give two or more; swaps alternate between them).")
    var adapters: [String] = []
    @Option(help: "Folder that adapter names resolve in.") var adaptersDir: String?
    @Option(help: "Timed swaps of each kind.") var rounds: Int = 10
    @Option(help: "fuse or runtime.") var loraMode: String = LoRAMode.fuse.rawValue

    func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard !adapters.isEmpty else { throw ValidationError("give at least one --adapter (two to alternate)") }
    }

    func run() throws {
        guard let mode = LoRAMode(rawValue: loraMode) else { throw CLIError("unknown --lora-mode '\(loraMode)'") }
        let specs: [AdapterSpec]
        do { specs = try adapters.map(AdapterSpec.init(parsing:)) } catch { throw CLIError("\(error)") }
        let start = Date()
        let model = try modelOptions.load()
        let loadSeconds = Date().timeIntervalSince(start)
        let manager = AdapterManager(model: model, adaptersDirectory: adaptersDir.map { URL(fileURLWithPath: $0) },
                                     cacheLimitBytes: 4 << 30, mode: mode)
        func swap(_ spec: AdapterSpec) throws -> SwapReport {
            do { return try manager.activate([spec]) } catch { throw CLIError("\(error)") }
        }
        // Warm-up: first touch of the fused buffers and the files in the page cache.
        for spec in specs { _ = try swap(spec) }
        _ = try manager.activate([])

        // Cold: the cache emptied before each swap (the file comes from the OS page cache), and no
        // fused weights kept from before: read, parse and fuse.
        var noFusedCache = Tuning.current
        noFusedCache.fusedSetCacheBytes = 0
        var cold: [Double] = [], coldLoad: [Double] = [], coldApply: [Double] = []
        try Tuning.$current.withValue(noFusedCache) {
            manager.releaseUnusedBuffers()
            _ = try swap(specs[0])  // buffers mapped again
            for round in 0..<rounds {
                let spec = specs[round % specs.count]
                manager.cache.removeAll()
                _ = try manager.activate([])
                let report = try swap(spec)
                precondition(report.cache == .miss && !report.reusedFusedWeights)
                cold.append(report.totalMs)
                coldLoad.append(report.loadMs)
                coldApply.append(report.applyMs)
            }
        }
        // Hit: alternate between cached adapters; each swap takes the previous one off. With the
        // defaults, a set fused before is installed from the fused-weight cache (if it fits); with
        // that cache off (`hit_fuse_ms`), every swap fuses.
        for spec in specs { _ = try swap(spec) }
        let alternating = specs.count > 1 ? specs : [specs[0], AdapterSpec(name: specs[0].name, scale: specs[0].scale * 0.5)]
        func hits(afterRender: Bool = false) throws -> (total: [Double], unload: [Double], apply: [Double], reused: Int) {
            _ = try swap(alternating.last!)
            var times: ([Double], [Double], [Double], Int) = ([], [], [], 0)
            for round in 0..<rounds * 2 {
                if afterRender {
                    // A render hands idle mapped weight pages back (the text encoders', the fused
                    // layers' bases, the UNet's before the decode), so a service's next swap maps
                    // the bases it reads in again. That release is the render's, not timed here.
                    for component in [StableDiffusionModel.IdleComponent.textEncoders, .unetFusedBases, .unet] {
                        model.releaseIdlePages(component)
                    }
                }
                let report = try swap(alternating[round % alternating.count])
                precondition(report.cache == .hit, "expected a cache hit, got \(report.cache)")
                times.0.append(report.totalMs)
                times.1.append(report.unloadMs)
                times.2.append(report.applyMs)
                if report.reusedFusedWeights { times.3 += 1 }
            }
            return times
        }
        let (hit, unload, apply, reused) = try hits()
        let hitAfterRender = try hits(afterRender: true).total
        let hitFuse = try Tuning.$current.withValue(noFusedCache) { () throws -> [Double] in
            manager.releaseUnusedBuffers()  // drop the kept sets, so every swap fuses
            return try hits().total
        }
        let layers = try swap(specs[0]).layers
        // Before the copy-floor measure, whose scratch copy of every fused layer is not the service's memory.
        let peakBytes = ResidentMemory.peakBytes()
        let copyFloor = mode == .fuse ? manager.measureCopyFloor(rounds: rounds) : 0
        func median(_ xs: [Double]) -> Double {
            let s = xs.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        var result: [String: Any] = [
            "bench": "swap", "model": model.name, "mode": mode.rawValue, "adapters": specs.map(\.description),
            "rounds": rounds, "layers": layers,
            "cold_ms": median(cold), "cold_load_ms": median(coldLoad), "cold_apply_ms": median(coldApply),
            "hit_ms": median(hit), "unload_ms": median(unload), "apply_ms": median(apply),
            "hit_ms_min": hit.min()!, "cold_ms_min": cold.min()!, "copy_floor_ms": copyFloor,
            "hit_after_render_ms": median(hitAfterRender), "hit_fuse_ms": median(hitFuse),
            "hit_reused_fused_weights": reused, "fused_cache_mb": Tuning.current.fusedSetCacheBytes >> 20,
            "load_seconds": loadSeconds,
            "blas_core": BLAS.coreName, "blas_core_selected_by": BLASCoreSelection.outcome.selectedBy,
            "blas_core_detected": BLASCoreSelection.outcome.detected ?? BLAS.coreName, "cores": ProcessInfo.processInfo.activeProcessorCount,
        ]
        if let peakBytes { result["peak_rss_gb"] = Double(peakBytes) / Double(1 << 30) }
        let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
