import Foundation
import HotswapCore

/// fused = base + sum over terms of scale * up * down (or scale * dense), in bands of rows small
/// enough to stay in cache between terms: memory traffic is one read of the base and one write of
/// the result, not passes over whole layers.
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
            // Whole 4-row tiles: a band ending in a partial tile pays a full tile's products for it
            // (25 rows of 1280 columns would compute 28).
            let rows = bandFloats / max(1, job.columns)
            let rowsPerBand = rows >= 4 ? rows / 4 * 4 : max(1, rows)
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

    /// One band of rows. A low-rank term reads the base (or the band's result so far) and writes the
    /// band in one pass of our own kernel (`Elementwise.lowRankFuse`: a rank-r product is too thin for
    /// sgemm to run near peak); a dense term adds onto the band in cache.
    @inline(__always)
    static func fuse(_ job: Job, rows: Range<Int>) {
        let n = job.columns
        let out = job.out + rows.lowerBound * n
        var source = UnsafePointer(job.base + rows.lowerBound * n)  // what the next term adds onto
        // The last term's result is not read again until inference: it streams around the cache.
        let lastLowRank = job.terms.lastIndex { $0.dense == nil }
        let streamsLast = lastLowRank == job.terms.count - 1
        for (index, term) in job.terms.enumerated() {
            if let dense = term.dense {
                if source != UnsafePointer(out) {
                    out.update(from: source, count: rows.count * n)
                    source = UnsafePointer(out)
                }
                let delta = dense + rows.lowerBound * n
                let scale = term.scale
                for i in 0..<(rows.count * n) { out[i] += scale * delta[i] }
            } else if let up = term.up, let down = term.down {
                Elementwise.lowRankFuse(base: source, up: up + rows.lowerBound * term.rank, down: down, into: out,
                                        rows: rows.count, columns: n, rank: term.rank, scale: term.scale,
                                        streaming: streamsLast && index == lastLowRank)
                source = UnsafePointer(out)
            }
        }
        if source != UnsafePointer(out) { out.update(from: source, count: rows.count * n) }  // no terms: the base
    }
}
