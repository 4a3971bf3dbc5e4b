import CKernels
import Foundation
/// Scaled dot-product attention, softmax(Q K^T * scale [+ causal mask]) V, per head.
/// Heads are read in place (row stride heads * headDim), so no transposes are materialized.
/// Unmasked attention (the UNet's, the VAE's) runs the fused kernel, whose score blocks never leave
/// the cache; the causal text encoder runs strided sgemm + softmax + sgemm over chunks of query rows,
/// so its score matrix stays bounded (a 64x64-latent self-attention has 4096 x 4096 scores per head).
public enum Attention {
    /// Upper bound on the score scratch buffer (floats): 4 M floats = 16 MB.
    public static var maxScoreFloats = EnvironmentSetting.integer("HOTSWAP_ATTENTION_SCORE_FLOATS", default: 4 << 20, accept: { $0 > 0 })

    /// query [batch, queryLength, heads * headDim], key/value [batch, keyLength, heads * headDim].
    public static func scaledDotProduct(query: Tensor, key: Tensor, value: Tensor, heads: Int,
                                        causal: Bool = false) -> Tensor {
        let work = 4.0 * Double(query.shape[0] * query.shape[1] * key.shape[1] * query.shape[2])
        return OpProfile.measure(.attention, flops: work) {
            attend(query: query, key: key, value: value, heads: heads, causal: causal)
        }
    }

    /// Work the (batch, head) pairs across the BLAS thread count, each worker with
    /// single-threaded sgemm, so the softmax between the two products runs in parallel too
    /// (with multi-threaded sgemm it would run on one core while the other spins).
    public static var parallelHeads = ProcessInfo.processInfo.environment["HOTSWAP_ATTENTION_PARALLEL"] != "0"

    /// The fused kernel (CKernels/attention_impl.h) for unmasked attention; HOTSWAP_FUSED_ATTENTION=0 falls
    /// back to sgemm + softmax + sgemm (which the causal text encoder always uses).
    nonisolated(unsafe) public static var useFusedKernel = ProcessInfo.processInfo.environment["HOTSWAP_FUSED_ATTENTION"] != "0"
    /// Query rows per work item of the fused kernel: each item packs its head's K and V once.
    static let fusedRowsPerItem = 1024

    static func attend(query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool) -> Tensor {
        precondition(query.rank == 3 && key.rank == 3 && value.shape == key.shape,
                     "attention: q \(query.shape) k \(key.shape) v \(value.shape)")
        precondition(key.shape[0] == query.shape[0] && key.shape[2] == query.shape[2] && query.shape[2] % heads == 0,
                     "attention: q \(query.shape) k \(key.shape) heads \(heads)")
        if useFusedKernel && !causal {
            return attendFused(query: query, key: key, value: value, heads: heads)
        }
        return attendUnfused(query: query, key: key, value: value, heads: heads, causal: causal)
    }

    static func attendFused(query: Tensor, key: Tensor, value: Tensor, heads: Int) -> Tensor {
        let (batch, queryLength, width) = (query.shape[0], query.shape[1], query.shape[2])
        let (keyLength, headDim) = (key.shape[1], width / heads)
        let scale = 1 / Float(headDim).squareRoot()
        let output = Tensor(uninitialized: [batch, queryLength, width])
        let chunks = (queryLength + fusedRowsPerItem - 1) / fusedRowsPerItem
        let items = batch * heads * chunks
        let macs = 2 * batch * queryLength * keyLength * width
        let workers = macs >= BLAS.smallProductMACs ? max(1, min(BLAS.threadCount, items)) : 1
        let scratchFloats = hs_attention_scratch_floats(keyLength, headDim)

        func run(worker: Int) {
            let scratch = TensorStorage(uninitializedCount: scratchFloats)  // pooled
            defer { withExtendedLifetime(scratch) {} }
            var item = worker
            while item < items {
                let (pair, chunk) = (item / chunks, item % chunks)
                let (b, h) = (pair / heads, pair % heads)
                let firstRow = chunk * fusedRowsPerItem
                let rows = min(fusedRowsPerItem, queryLength - firstRow)
                let q = query.data + (b * queryLength + firstRow) * width + h * headDim
                let k = key.data + b * keyLength * width + h * headDim
                let v = value.data + b * keyLength * width + h * headDim
                let o = output.data + (b * queryLength + firstRow) * width + h * headDim
                hs_attention(q, width, k, v, width, rows, keyLength, headDim, scale, o, width, scratch.pointer)
                item += workers
            }
        }
        if workers == 1 {
            run(worker: 0)
        } else {
            DispatchQueue.concurrentPerform(iterations: workers) { run(worker: $0) }
        }
        return output
    }

    static func attendUnfused(query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool) -> Tensor {
        let (batch, queryLength, width) = (query.shape[0], query.shape[1], query.shape[2])
        let (keyLength, headDim) = (key.shape[1], width / heads)
        let scale = 1 / Float(headDim).squareRoot()
        let output = Tensor(uninitialized: [batch, queryLength, width])
        let chunkRows = max(1, min(queryLength, maxScoreFloats / max(1, keyLength)))
        let pairs = batch * heads
        let blasThreads = BLAS.threadCount
        // Small attentions (text encoder, tiny models) are not worth waking a second thread for.
        let macs = 2 * batch * queryLength * keyLength * width
        let workers = parallelHeads && macs >= BLAS.smallProductMACs ? max(1, min(blasThreads, pairs)) : 1

        func run(worker: Int) {
            let scratch = TensorStorage(uninitializedCount: chunkRows * keyLength)  // pooled
            let scores = scratch.pointer
            defer { withExtendedLifetime(scratch) {} }
            var pair = worker
            while pair < pairs {
                let (b, h) = (pair / heads, pair % heads)
                let q = query.data + b * queryLength * width + h * headDim
                let k = key.data + b * keyLength * width + h * headDim
                let v = value.data + b * keyLength * width + h * headDim
                let o = output.data + b * queryLength * width + h * headDim
                var firstRow = 0
                while firstRow < queryLength {
                    let rows = min(chunkRows, queryLength - firstRow)
                    BLAS.sgemm(transB: true, m: rows, n: keyLength, k: headDim, alpha: scale,
                               a: q + firstRow * width, lda: width,
                               b: k, ldb: width,
                               c: scores, ldc: keyLength)
                    for r in 0..<rows {
                        // A causal row i sees keys 0...i; the rest get probability 0.
                        let visible = causal ? min(keyLength, firstRow + r + 1) : keyLength
                        Softmax.row(scores + r * keyLength, visible: visible, count: keyLength)
                    }
                    BLAS.sgemm(m: rows, n: headDim, k: keyLength,
                               a: scores, lda: keyLength,
                               b: v, ldb: width,
                               c: o + firstRow * width, ldc: width)
                    firstRow += rows
                }
                pair += workers
            }
        }

        if workers == 1 {
            run(worker: 0)
        } else {
            BLAS.threadCount = 1
            DispatchQueue.concurrentPerform(iterations: workers) { run(worker: $0) }
            BLAS.threadCount = blasThreads
        }
        return output
    }
}
