import CBLAS

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
        // Small products finish before a second BLAS thread is even scheduled; threading them only
        // adds a barrier (and, on a busy machine, a scheduler quantum per call).
        let singleThreaded = m * n * k < smallProductMACs && configuredThreads > 1
        if singleThreaded { openblas_set_num_threads(1) }
        defer { if singleThreaded { openblas_set_num_threads(Int32(configuredThreads)) } }
        cblas_sgemm(CblasRowMajor,
                    transA ? CblasTrans : CblasNoTrans,
                    transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }

    /// The kernel family OpenBLAS picked for this CPU (e.g. "SkylakeX", "Zen", "Haswell").
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// Products with fewer multiply-adds than this run on one thread.
    nonisolated(unsafe) public static var smallProductMACs = 1 << 24

    nonisolated(unsafe) private static var configuredThreads = Int(openblas_get_num_threads())

    public static var threadCount: Int {
        get { configuredThreads }
        set {
            configuredThreads = newValue
            openblas_set_num_threads(Int32(newValue))
        }
    }
}
