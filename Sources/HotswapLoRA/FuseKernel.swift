import Foundation

/// fused = base + sum over terms of scale * up * down, row by row: each output row is the base
/// row plus a few axpy passes over the (cache-resident) down rows, so memory traffic is one read
/// of the base and one write of the result, not the copy-then-sgemm(beta = 1) three passes.
/// Rows are split across cores. The result depends only on the inputs and the term order, never
/// on the split.
enum FuseKernel {
    struct Term {
        let down: UnsafePointer<Float>   // [rank, columns]
        let up: UnsafePointer<Float>     // [rows, rank]
        let rank: Int
        let scale: Float
    }

    struct Job {
        let base: UnsafePointer<Float>
        let out: UnsafeMutablePointer<Float>
        let rows: Int
        let columns: Int
        let terms: [Term]
    }

    /// Runs every job, splitting them into row bands of about `bandFloats` elements over `workers` threads.
    static func run(_ jobs: [Job], workers: Int = ProcessInfo.processInfo.activeProcessorCount, bandFloats: Int = 1 << 16) {
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

    @inline(__always)
    static func fuse(_ job: Job, rows: Range<Int>) {
        let n = job.columns
        for r in rows {
            let out = job.out + r * n
            out.update(from: job.base + r * n, count: n)
            for term in job.terms {
                let upRow = term.up + r * term.rank
                for k in 0..<term.rank {
                    let w = term.scale * upRow[k]
                    if w == 0 { continue }
                    let down = term.down + k * n
                    for j in 0..<n { out[j] += w * down[j] }
                }
            }
        }
    }
}
