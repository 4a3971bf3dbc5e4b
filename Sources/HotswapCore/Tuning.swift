import Foundation

/// Every tuning knob of the kernels, as one value: read once from the environment (HOTSWAP_*,
/// for benchmarks and CI passes) and never mutated. Code that wants other values (a test forcing
/// several bands or chunks) runs under `Tuning.$current.withValue(...)`: a task-local, so the
/// change reaches only that task's calls and never a suite running beside it.
///
/// The kernels read `Tuning.current` on the calling thread, before they fan out to worker threads
/// (which see no task-locals).
public struct Tuning: Sendable, Equatable {
    /// Minimum output tiles (2x2 each) per image for Winograd F(2x2, 3x3): 256, a 32x32 map.
    /// HOTSWAP_WINOGRAD_MIN_TILES: 0 or less, every eligible layer; a huge value, never.
    public var winogradMinimumTiles = 256
    /// Minimum 4x4 output tiles per image for F(4x4, 3x3) instead of F(2x2, 3x3): 256, a 64x64 map.
    /// HOTSWAP_WINOGRAD_F43_MIN_TILES: 0 or less, F(4x4) wherever Winograd applies; a huge value, never.
    public var winogradMinimumLargeTiles = 256
    /// Winograd scratch per chunk (transformed input + products), in floats: 8 M floats = 32 MB.
    /// HOTSWAP_WINOGRAD_CHUNK_FLOATS.
    public var winogradChunkFloats = 8 << 20
    /// im2col column buffer bound, in floats: 16 M floats = 64 MB.
    public var convolutionMaxColumnFloats = 16 << 20
    /// Convolutions whose product has at most this many output positions (batch x H x W: the
    /// UNet's 16x16, 8x8 and 4x4 levels at 256 and 512) compute [positions, outC] and transpose it
    /// into NCHW: OpenBLAS runs the weight-times-columns product with few columns at 28-85 GFLOPS
    /// on 2 Zen 3 cores, the transposed one at 47-114 (docs/PERFORMANCE.md). HOTSWAP_CONV_TRANSPOSED_MAX_POSITIONS; 0, never.
    public var convolutionTransposedMaxPositions = 256
    /// Convolutions with at most this many output positions (a 4x4 map, batch 1 or 2) run on
    /// hs_sgemm_few_columns instead (AVX2 and AVX-512 CPUs). HOTSWAP_CONV_FEW_COLUMNS_MAX_POSITIONS; 0, never.
    public var convolutionFewColumnsMaxPositions = 32
    /// Linear layers with this many rows (tokens x batch) run on hs_linear_product instead of
    /// OpenBLAS: the text encoders' 77 and 154 rows measured 1.04-1.32x OpenBLAS' speed on 2 Zen 3
    /// cores, 64 and fewer or 256 and more rows level or slower (docs/PERFORMANCE.md).
    /// HOTSWAP_LINEAR_KERNEL_ROWS=LOW-HIGH (e.g. 65-192); 0, never.
    public var linearKernelRows: ClosedRange<Int>? = 65...192
    /// Upper bound on attention's score scratch (floats): 4 M floats = 16 MB. HOTSWAP_ATTENTION_SCORE_FLOATS.
    public var attentionMaxScoreFloats = 4 << 20
    /// Attention (batch, head) pairs spread over the BLAS threads, each with single-threaded sgemm.
    /// HOTSWAP_ATTENTION_PARALLEL=0 turns it off.
    public var attentionParallelHeads = true
    /// The fused kernel for unmasked attention; HOTSWAP_FUSED_ATTENTION=0 falls back to sgemm +
    /// softmax + sgemm (which the causal text encoder always uses).
    public var attentionFusedKernel = true
    /// HOTSWAP_RELEASE_FUSED_BASE=1: a fused LoRA layer hands its memory-mapped F32 base weight's
    /// pages back to the kernel right after each fuse, so the layer is resident once, not twice,
    /// also between swaps without a render (a render does it anyway for UNet layers while it
    /// denoises: `releaseIdleWeightPages`), at the price of page faults when the next swap reads
    /// the base again (measured: SDXL hit swap 0.98 -> 1.40 s, SD1.5 72 -> 92 ms). Off by default.
    public var releaseFusedBasePages = false
    /// A render hands the memory-mapped F32 weight pages of idle components back to the kernel: the
    /// text encoders once the prompt is encoded, the bases of fused UNet layers while it denoises,
    /// the UNet before the VAE decode (they read back from the page cache at their next use).
    /// HOTSWAP_RELEASE_IDLE_WEIGHTS=0 keeps them resident.
    public var releaseIdleWeightPages = true
    /// Bytes of fused LoRA weights kept for adapter sets that were active before, so that swapping
    /// back to one installs its weights without fusing anything (newest kept first). 1 GiB holds two
    /// SD1.5 rank-8 attention sets (0.49 GB each), not one SDXL set (4.8 GB): those are fused again
    /// into reused buffers. HOTSWAP_FUSED_CACHE_MB; 0 turns it off.
    public var fusedSetCacheBytes = 1 << 30
    /// Products with fewer multiply-adds than this run on one BLAS thread.
    public var smallProductMACs = 1 << 24

    public init() {}

    /// The defaults with the HOTSWAP_* variables applied (a malformed value keeps the default).
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Tuning {
        var tuning = Tuning()
        func integer(_ name: String, _ value: inout Int, accept: (Int) -> Bool = { _ in true }) {
            if let text = environment[name], let parsed = Int(text), accept(parsed) { value = parsed }
        }
        integer("HOTSWAP_WINOGRAD_MIN_TILES", &tuning.winogradMinimumTiles)
        integer("HOTSWAP_WINOGRAD_F43_MIN_TILES", &tuning.winogradMinimumLargeTiles)
        integer("HOTSWAP_WINOGRAD_CHUNK_FLOATS", &tuning.winogradChunkFloats, accept: { $0 > 0 })
        integer("HOTSWAP_CONV_TRANSPOSED_MAX_POSITIONS", &tuning.convolutionTransposedMaxPositions)
        integer("HOTSWAP_CONV_FEW_COLUMNS_MAX_POSITIONS", &tuning.convolutionFewColumnsMaxPositions)
        integer("HOTSWAP_ATTENTION_SCORE_FLOATS", &tuning.attentionMaxScoreFloats, accept: { $0 > 0 })
        if let text = environment["HOTSWAP_LINEAR_KERNEL_ROWS"] {
            let bounds = text.split(separator: "-").compactMap { Int($0) }
            if text == "0" { tuning.linearKernelRows = nil }
            else if bounds.count == 2, bounds[0] >= 1, bounds[0] <= bounds[1] { tuning.linearKernelRows = bounds[0]...bounds[1] }
        }
        var fusedCacheMB = tuning.fusedSetCacheBytes >> 20
        integer("HOTSWAP_FUSED_CACHE_MB", &fusedCacheMB, accept: { $0 >= 0 && $0 < 1 << 30 })
        tuning.fusedSetCacheBytes = fusedCacheMB << 20
        tuning.attentionParallelHeads = environment["HOTSWAP_ATTENTION_PARALLEL"] != "0"
        tuning.attentionFusedKernel = environment["HOTSWAP_FUSED_ATTENTION"] != "0"
        tuning.releaseFusedBasePages = environment["HOTSWAP_RELEASE_FUSED_BASE"] == "1"
        tuning.releaseIdleWeightPages = environment["HOTSWAP_RELEASE_IDLE_WEIGHTS"] != "0"
        return tuning
    }

    /// The process' tuning, read once.
    public static let process = fromEnvironment()

    /// The tuning in effect for the current task.
    @TaskLocal public static var current: Tuning = process
}
