import Foundation
import HotswapCore

/// fused = base + sum over terms of scale * up * down (or scale * dense), in bands of rows small enough to stay in
/// cache between the copy of the base and the sgemm updates: memory traffic is one read of the
/// base and one write of the result, not the copy-then-sgemm(beta = 1) passes over whole layers.
/// Bands are split across cores. The result depends only on the inputs and the term order, never
/// on the split.
enum FuseKernel {
    struct Term {
        let down: UnsafePointer<Float>?  // [rank, columns] (low-rank terms)
        let up: UnsafePointer<Float>?    // [rows, rank]
        let rank: Int
        /// [rows, columns]: a dense update (LoHa, LoKr, full diff, DoRA), instead of up and down.
        let dense: UnsafePointer<Float>?
        let scale: Float

        init(down: UnsafePointer<Float>, up: UnsafePointer<Float>, rank: Int, scale: Float) {
            (self.down, self.up, self.rank, self.dense, self.scale) = (down, up, rank, nil, scale)
        }

        init(dense: UnsafePointer<Float>, scale: Float) {
            (self.down, self.up, self.rank, self.dense, self.scale) = (nil, nil, 0, dense, scale)
        }
    }

    struct Job {
        let base: UnsafePointer<Float>
        let out: UnsafeMutablePointer<Float>
        let rows: Int
        let columns: Int
        let terms: [Term]
    }

    /// Runs every job, splitting them into row bands of about `bandFloats` elements over `workers` threads.
    static func run(_ jobs: [Job], workers: Int = ProcessInfo.processInfo.activeProcessorCount, bandFloats: Int = 1 << 15) {
        var bands: [(job: Int, rows: Range<Int>)] = []
        for (index, job) in jobs.enumerated() {
            let rowsPerBand = max(1, bandFloats / max(1, job.columns))
            var start = 0
            while start < job.rows {
                let end = min(job.rows, start + rowsPerBand)
                bands.append((index, start..<end))
                start = end
            }
        }
        if workers <= 1 || bands.count < 2 {
            for band in bands { fuse(jobs[band.job], rows: band.rows) }
            return
        }
        let count = bands.count
        bands.withUnsafeBufferPointer { bands in
            jobs.withUnsafeBufferPointer { jobs in
                DispatchQueue.concurrentPerform(iterations: workers) { worker in
                    // Contiguous shares keep each thread streaming through memory in order.
                    let lo = count * worker / workers, hi = count * (worker + 1) / workers
                    for i in lo..<hi { fuse(jobs[bands[i].job], rows: bands[i].rows) }
                }
            }
        }
    }

    /// One band of rows: copy the base rows (the band then sits in cache), then add each term
    /// with sgemm (beta = 1) on the cached band, so main memory sees one read and one write.
    @inline(__always)
    static func fuse(_ job: Job, rows: Range<Int>) {
        let n = job.columns
        let out = job.out + rows.lowerBound * n
        out.update(from: job.base + rows.lowerBound * n, count: rows.count * n)
        for term in job.terms {
            if let dense = term.dense {
                let source = dense + rows.lowerBound * n
                let scale = term.scale
                for i in 0..<(rows.count * n) { out[i] += scale * source[i] }
            } else if let up = term.up, let down = term.down {
                BLAS.sgemm(m: rows.count, n: n, k: term.rank, alpha: term.scale,
                           a: up + rows.lowerBound * term.rank, lda: term.rank,
                           b: down, ldb: n, beta: 1, c: out, ldc: n)
            }
        }
    }
}
