import Foundation

/// Whether files are in the OS page cache (mincore on a read-only mapping), to label a warmup
/// "cold" or "warm".
public enum PageCache {
    /// Fraction (0...1) of the file's pages resident in memory, nil when it cannot be told.
    public static func residentFraction(path: String) -> Double? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return nil }
        let size = Int(st.st_size)
        guard let base = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else { return nil }
        defer { munmap(base, size) }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pages = (size + page - 1) / page
        var vector = [UInt8](repeating: 0, count: pages)
        guard mincore(base, size, &vector) == 0 else { return nil }
        return Double(vector.reduce(0) { $0 + Int($1 & 1) }) / Double(pages)
    }

    /// "warm" when at least 90% of the bytes of `paths` are resident, "cold" when under 10%,
    /// nil when mixed or unknown.
    public static func label(paths: [String]) -> String? {
        var resident = 0.0, total = 0.0
        for path in paths {
            guard let fraction = residentFraction(path: path),
                  let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.doubleValue else { continue }
            resident += fraction * size
            total += size
        }
        guard total > 0 else { return nil }
        let fraction = resident / total
        return fraction >= 0.9 ? "warm" : fraction < 0.1 ? "cold" : nil
    }

    /// The label for a diffusers model folder's weight files, or a single-file checkpoint (see `label(paths:)`).
    public static func label(model: URL) -> String? {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: model.path, isDirectory: &isDirectory), !isDirectory.boolValue {
            return label(paths: [model.path])
        }
        return label(paths: modelWeightFiles(model))
    }

    /// The weight files of a diffusers model folder.
    public static func modelWeightFiles(_ directory: URL) -> [String] {
        ["unet", "text_encoder", "vae"].flatMap { component -> [String] in
            let dir = directory.appendingPathComponent(component)
            let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
            return files.filter { $0.hasSuffix(".safetensors") }.map { dir.appendingPathComponent($0).path }
        }
    }
}
