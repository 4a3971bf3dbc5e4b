import Foundation
import HotswapCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes safetensors files the way the reference (Rust) library does: `__metadata__` first, the
/// JSON header padded with spaces to a multiple of 8 bytes so every tensor's data is aligned, data
/// laid out in header order without gaps. Tensors are ordered by name.
///
/// The file appears atomically: it is written to a temporary file in the same directory, flushed,
/// and renamed over `url`; on any failure the temporary file is removed and `url` is untouched.
public enum SafeTensorsWriter {
    /// `dtype`: .F32, .F16 or .BF16 (values rounded to nearest even).
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL,
                             dtype: SafeTensorsDType = .F32) throws {
        let path = url.path
        guard [.F32, .F16, .BF16].contains(dtype) else {
            throw SafeTensorsError.unsupportedDType(file: path, tensor: tensors.keys.sorted().first ?? "", dtype: dtype,
                                                    operation: "write")
        }
        if let bad = tensors.keys.first(where: { $0 == "__metadata__" }) {
            throw SafeTensorsError.writeFailed(file: path, reason: "a tensor cannot be named '\(bad)'")
        }
        let names = tensors.keys.sorted()
        let header = headerBytes(tensors: tensors, names: names, metadata: metadata, dtype: dtype)

        try AtomicFile.write(to: url) { fd in
            try writeAll(fd, header, file: path)
            let chunk = 1 << 20  // elements converted per write for 16-bit output
            var scratch = [UInt16]()
            for name in names {
                let t = tensors[name]!
                let count = t.count
                guard count > 0 else { continue }
                if dtype == .F32 {
                    try writeAll(fd, UnsafeRawBufferPointer(start: t.data, count: count * 4), file: path)
                    continue
                }
                if scratch.isEmpty { scratch = [UInt16](repeating: 0, count: min(chunk, max(count, 1))) }
                var start = 0
                while start < count {
                    let n = min(chunk, count - start)
                    if scratch.count < n { scratch = [UInt16](repeating: 0, count: n) }
                    try scratch.withUnsafeMutableBufferPointer { buf in
                        if dtype == .F16 {
                            Float16Conversion.convertF32ToF16(t.data + start, buf.baseAddress!, count: n)
                        } else {
                            Float16Conversion.convertF32ToBF16(t.data + start, buf.baseAddress!, count: n)
                        }
                        try writeAll(fd, UnsafeRawBufferPointer(start: buf.baseAddress, count: n * 2), file: path)
                    }
                    start += n
                }
            }
        }
    }

    /// The 8-byte length prefix plus the padded JSON header.
    static func headerBytes(tensors: [String: Tensor], names: [String], metadata: [String: String],
                            dtype: SafeTensorsDType) -> [UInt8] {
        var parts: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(JSONWriter.quote($0)):\(JSONWriter.quote(metadata[$0]!))" }
            parts.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
        }
        var offset = 0
        for name in names {
            let t = tensors[name]!
            let bytes = t.count * dtype.size
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append("\(JSONWriter.quote(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(shape)],"
                         + "\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var json = Array(("{" + parts.joined(separator: ",") + "}").utf8)
        let padding = (8 - json.count % 8) % 8
        json.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))
        var result = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
        result.append(contentsOf: json)
        return result
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], file: String) throws {
        try bytes.withUnsafeBytes { try writeAll(fd, $0, file: file) }
    }

    private static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, file: String) throws {
        try AtomicFile.writeAll(fd, bytes, file: file)
    }
}

/// Write-to-temporary-then-rename, so readers never see a partial file.
enum AtomicFile {
    static func write(to url: URL, _ body: (Int32) throws -> Void) throws {
        let path = url.path
        let directory = url.deletingLastPathComponent().path
        let temp = directory + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw SafeTensorsError.writeFailed(file: path, reason: "cannot create a temporary file in \(directory): "
                                               + String(cString: strerror(errno)))
        }
        var closed = false
        do {
            try body(fd)
            guard fsync(fd) == 0 else {
                throw SafeTensorsError.writeFailed(file: path, reason: "fsync: " + String(cString: strerror(errno)))
            }
            closed = true
            guard close(fd) == 0 else {
                throw SafeTensorsError.writeFailed(file: path, reason: "close: " + String(cString: strerror(errno)))
            }
            guard rename(temp, path) == 0 else {
                throw SafeTensorsError.writeFailed(file: path, reason: "rename: " + String(cString: strerror(errno)))
            }
        } catch {
            if !closed { close(fd) }
            unlink(temp)
            throw error
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, file: String) throws {
        guard var p = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            let n = systemWrite(fd, p, min(remaining, 1 << 30))
            if n < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsError.writeFailed(file: file, reason: String(cString: strerror(errno)))
            }
            p += n
            remaining -= n
        }
    }
}

private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}
