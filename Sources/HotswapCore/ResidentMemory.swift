import Foundation

/// The process's resident memory: its peak (for benchmarks' reports) and handing pages of a
/// read-only file mapping back to the kernel.
public enum ResidentMemory {
    /// Peak resident set size of this process in bytes (VmHWM of /proc/self/status); nil where
    /// there is no procfs.
    public static func peakBytes() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.split(whereSeparator: \.isWhitespace)
            if fields.count >= 2, let kb = Int(fields[1]) { return kb * 1024 }
        }
        return nil
    }

    /// Drops the pages lying wholly inside [start, start + byteCount) from the process
    /// (MADV_DONTNEED). Only for memory that mirrors a file and is never written (a private file
    /// mapping nobody writes to): a later read maps the file's bytes back from the page cache.
    public static func releasePages(_ start: UnsafeRawPointer, byteCount: Int) {
        #if os(Linux)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (Int(bitPattern: start) + page - 1) / page * page
        let end = (Int(bitPattern: start) + byteCount) / page * page
        guard end > first else { return }
        _ = madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_DONTNEED)
        #endif
    }
}
