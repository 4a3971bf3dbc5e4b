import Foundation

public enum Parallel {
    /// Runs body(part, range) for `count` items split evenly into at most `parts` contiguous ranges,
    /// on the calling thread when one range is enough, else with DispatchQueue.concurrentPerform.
    /// Callers pass the BLAS thread count: OpenBLAS' threads sleep between its calls (BLAS.idleThreadsSleep).
    public static func split(_ count: Int, over parts: Int, _ body: (_ part: Int, _ range: Range<Int>) -> Void) {
        let used = min(parts, count)
        if used <= 1 { body(0, 0..<count); return }
        DispatchQueue.concurrentPerform(iterations: used) { part in
            body(part, (count * part / used)..<(count * (part + 1) / used))
        }
    }
}
