import CKernels
import Foundation
/// Scaled dot-product attention, softmax(Q K^T * scale [+ causal mask]) V, per head.
/// Heads are read in place (row stride heads * headDim), so no transposes are materialized.
/// Unmasked attention (the UNet's, the VAE's) runs the fused kernel, whose score blocks never leave
/// the cache; the causal text encoder runs strided sgemm + softmax + sgemm over chunks of query rows,
/// so its score matrix stays bounded (a 64x64-latent self-attention has 4096 x 4096 scores per head).
public enum Attention {

    /// query [batch, queryLength, heads * headDim], key/value [batch, keyLength, heads * headDim].
    public static func scaledDotProduct(query: Tensor, key: Tensor, value: Tensor, heads: Int,
                                        causal: Bool = false) -> Tensor {
        let work = 4.0 * Double(query.shape[0] * query.shape[1] * key.shape[1] * query.shape[2])
        return OpProfile.measure(.attention, flops: work) {
            attend(query: query, key: key, value: value, heads: heads, causal: causal)
        }
    }

    /// Query rows per work item of the fused kernel: each item packs its head's K and V once.
    static let fusedRowsPerItem = 1024

    static func attend(query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool) -> Tensor {
        precondition(query.rank == 3 && key.rank == 3 && value.shape == key.shape,
                     "attention: q \(query.shape) k \(key.shape) v \(value.shape)")
        precondition(key.shape[0] == query.shape[0] && key.shape[2] == query.shape[2] && query.shape[2] % heads == 0,
                     "attention: q \(query.shape) k \(key.shape) heads \(heads)")
        if Tuning.current.attentionFusedKernel && !causal {
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
        let workers = macs >= Tuning.current.smallProductMACs ? max(1, min(BLAS.threadCount, items)) : 1
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
        let chunkRows = max(1, min(queryLength, Tuning.current.attentionMaxScoreFloats / max(1, keyLength)))
        let pairs = batch * heads
        let blasThreads = BLAS.threadCount
        // Small attentions (text encoder, tiny models) are not worth waking a second thread for.
        let macs = 2 * batch * queryLength * keyLength * width
        let workers = Tuning.current.attentionParallelHeads && macs >= Tuning.current.smallProductMACs ? max(1, min(blasThreads, pairs)) : 1

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
