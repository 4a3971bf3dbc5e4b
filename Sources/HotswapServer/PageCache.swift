// Whether a model's weight files are already in the page cache: the timing report splits base
// load times into cold and warm starts.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

enum PageCache {
    /// The fraction (0...1) of the bytes of `files` resident in the page cache, measured with
    /// mmap + mincore without reading the files; nil when it cannot be measured.
    static func residentFraction(of files: [URL]) -> Double? {
        #if canImport(Glibc)
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        var resident = 0, total = 0
        for file in files {
            let fd = open(file.path, O_RDONLY)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var info = stat()
            guard fstat(fd, &info) == 0, info.st_size > 0 else { continue }
            let size = Int(info.st_size)
            guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else { continue }
            defer { munmap(map, size) }
            let pages = (size + pageSize - 1) / pageSize
            var vector = [UInt8](repeating: 0, count: pages)
            guard mincore(map, size, &vector) == 0 else { continue }
            resident += vector.reduce(0) { $0 + Int($1 & 1) }
            total += pages
        }
        return total > 0 ? Double(resident) / Double(total) : nil
        #else
        return nil
        #endif
    }

    /// "warm" when at least 90% of the weights were resident, "cold" otherwise, "unknown" when
    /// it could not be measured.
    static func describe(modelDirectory: URL) -> String {
        let files = weightFiles(in: modelDirectory)
        guard let fraction = residentFraction(of: files) else { return "unknown" }
        return fraction >= 0.9 ? "warm" : "cold"
    }

    static func weightFiles(in directory: URL) -> [URL] {
        guard let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil) else { return [] }
        return enumerator.compactMap { $0 as? URL }.filter { ["safetensors", "bin"].contains($0.pathExtension) }
    }
}
