import CBLAS
import Foundation

/// Thin, typed front of OpenBLAS' cblas_sgemm (row-major), plus its thread and core settings.
public enum BLAS {
    /// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, all row-major with leading dimensions.
    @inline(__always)
    public static func sgemm(transA: Bool = false, transB: Bool = false,
                             m: Int, n: Int, k: Int,
                             alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0,
                             c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        _ = idleThreadsSleep
        // A product of at most 4 rows (the time-embedding projections: one row per image) runs as
        // one sgemv per row: sgemm packs the whole of B even for a single row, ~2 GFLOPS here.
        if m <= 4 && !transA {
            for row in 0..<m {
                let y = c + row * ldc
                // beta 0 means "y need not be set": zero it, so stale NaN in a pooled buffer cannot leak.
                if beta == 0 { y.update(repeating: 0, count: n) }
                cblas_sgemv(CblasRowMajor, transB ? CblasNoTrans : CblasTrans,
                            Int32(transB ? n : k), Int32(transB ? k : n),
                            alpha, b, Int32(ldb), a + row * lda, 1, beta, y, 1)
            }
            return
        }
        // Small products finish before a second BLAS thread is even scheduled; threading them only
        // adds a barrier (and, on a busy machine, a scheduler quantum per call).
        let singleThreaded = m * n * k < Tuning.current.smallProductMACs && configuredThreads > 1
        if singleThreaded { openblas_set_num_threads(1) }
        defer { if singleThreaded { openblas_set_num_threads(Int32(configuredThreads)) } }
        cblas_sgemm(CblasRowMajor,
                    transA ? CblasTrans : CblasNoTrans,
                    transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }

    /// OpenBLAS' worker threads busy-wait for 2^28 cycles (~0.1 s) after each product before they sleep.
    /// Our own parallel loops (attention, Winograd transforms, im2col) run between products, so they
    /// shared both cores with that spinning: UNet 512 forward 5.1 s, 4.2 s with OPENBLAS_THREAD_TIMEOUT=4
    /// (2^4 cycles, sleep at once; waking a thread per product costs microseconds). OpenBLAS reads the
    /// variable when the library loads, so it is set here, the environment re-read and the threads
    /// restarted. A user's own OPENBLAS_THREAD_TIMEOUT / GOTO_THREAD_TIMEOUT is left alone, and an
    /// OpenBLAS without these entry points (an OpenMP build) is left as it is.
    private static let idleThreadsSleep: Void = {
        guard getenv("OPENBLAS_THREAD_TIMEOUT") == nil, getenv("GOTO_THREAD_TIMEOUT") == nil,
              let library = dlopen(nil, RTLD_NOW),
              let readEnvironment = dlsym(library, "openblas_read_env"),
              let stopThreads = dlsym(library, "blas_thread_shutdown_"),
              let startThreads = dlsym(library, "blas_thread_init") else { return }
        typealias VoidFunction = @convention(c) () -> Void
        typealias IntFunction = @convention(c) () -> Int32
        setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1)
        unsafeBitCast(readEnvironment, to: VoidFunction.self)()
        _ = unsafeBitCast(stopThreads, to: IntFunction.self)()
        _ = unsafeBitCast(startThreads, to: IntFunction.self)()
    }()

    /// The kernel family OpenBLAS picked for this CPU (e.g. "SkylakeX", "Zen", "Haswell").
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    nonisolated(unsafe) private static var configuredThreads: Int = {
        _ = idleThreadsSleep
        return Int(openblas_get_num_threads())
    }()

    public static var threadCount: Int {
        get { configuredThreads }
        set {
            configuredThreads = newValue
            openblas_set_num_threads(Int32(newValue))
        }
    }
}
