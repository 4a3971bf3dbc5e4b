import Foundation
import HotswapCore

/// fused = base + sum over terms of scale * up * down (or scale * dense), in bands of rows. For
/// low-rank terms the band's update is summed in a per-thread scratch that stays in cache, then
/// added to the base in one pass whose result goes to memory with streaming stores: main memory sees
/// one read of the base and one write of the result (no read-for-ownership of the fused buffer,
/// which a copy-then-sgemm(beta = 1) needs). Bands are split across cores. The result depends only
/// on the inputs and the term order, never on the split.
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
        var largestBand = 1
        for (index, job) in jobs.enumerated() {
            let rowsPerBand = max(1, bandFloats / max(1, job.columns))
            var start = 0
            while start < job.rows {
                let end = min(job.rows, start + rowsPerBand)
                bands.append((index, start..<end))
                largestBand = max(largestBand, (end - start) * job.columns)
                start = end
            }
        }
        let threads = workers <= 1 || bands.count < 2 ? 1 : workers
        let count = bands.count
        bands.withUnsafeBufferPointer { bands in
            jobs.withUnsafeBufferPointer { jobs in
                DispatchQueue.concurrentPerform(iterations: threads) { worker in
                    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: largestBand)
                    defer { scratch.deallocate() }
                    // Contiguous shares keep each thread streaming through memory in order.
                    let lo = count * worker / threads, hi = count * (worker + 1) / threads
                    for i in lo..<hi { fuse(jobs[bands[i].job], rows: bands[i].rows, scratch: scratch) }
                }
            }
        }
    }

    /// One band of rows. Low-rank terms: their sum into `scratch` (sgemm, beta 0 then 1), then
    /// out = base + scratch streamed to memory. Dense terms (as large as the weight themselves): the
    /// base copied into the band, then each term added on the cached band.
    @inline(__always)
    static func fuse(_ job: Job, rows: Range<Int>, scratch: UnsafeMutablePointer<Float>) {
        let n = job.columns
        let out = job.out + rows.lowerBound * n, base = job.base + rows.lowerBound * n
        let count = rows.count * n
        if job.terms.contains(where: { $0.dense != nil }) {
            out.update(from: base, count: count)
            for term in job.terms {
                if let dense = term.dense {
                    let source = dense + rows.lowerBound * n
                    let scale = term.scale
                    for i in 0..<count { out[i] += scale * source[i] }
                } else if let up = term.up, let down = term.down {
                    BLAS.sgemm(m: rows.count, n: n, k: term.rank, alpha: term.scale,
                               a: up + rows.lowerBound * term.rank, lda: term.rank,
                               b: down, ldb: n, beta: 1, c: out, ldc: n)
                }
            }
            return
        }
        var summed = false
        for term in job.terms {
            guard let up = term.up, let down = term.down else { continue }
            BLAS.sgemm(m: rows.count, n: n, k: term.rank, alpha: term.scale,
                       a: up + rows.lowerBound * term.rank, lda: term.rank,
                       b: down, ldb: n, beta: summed ? 1 : 0, c: scratch, ldc: n)
            summed = true
        }
        Elementwise.addStreaming(base, summed ? UnsafePointer(scratch) : nil, into: out, count: count)
    }
}
