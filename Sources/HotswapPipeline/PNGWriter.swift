import Foundation
import CPNG
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// PNG encoding over libpng, with A1111-compatible text chunks.
//
// libpng reports errors by longjmp'ing out of its error callback (or calling abort() when no
// jmp_buf is set). A longjmp across Swift frames is undefined behaviour — it skips releases and
// defers — so no Swift code may ever sit between a libpng call and a possible png_error. That
// rules out the classic API (png_create_write_struct + png_set_write_fn + png_write_*), whose
// callbacks would be Swift closures and whose setjmp would have to be done in C (this package has
// no C target of its own).
//
// libpng's *simplified* API (png_image_*) is the way out: each entry point runs its work under
// its own setjmp inside libpng (png_safe_execute) and returns 0 with a message in
// png_image.message on error — no callback into Swift, no longjmp past us. Its one gap is that
// png_image_write_to_memory cannot write text chunks ("If you need to write text chunks ... use
// one of the other APIs", png.h). So we let libpng produce the complete PNG in memory and then
// splice our tEXt/iTXt chunks in right after IHDR ourselves: a chunk is just length, type, data
// and a CRC-32, and the PNG spec allows text chunks anywhere between IHDR and IEND. All inputs
// are validated first, so libpng sees only well-formed requests.
//
// Text follows what A1111 does (modules/images.py -> PIL's PngInfo.add_text): a value that is
// representable in Latin-1 goes into a tEXt chunk; otherwise into an uncompressed iTXt chunk with
// the same keyword, an empty language tag and an empty translated keyword, text in UTF-8. A1111's
// and ComfyUI's readers (PIL's `image.info` / `image.text`) read both kinds.

/// Errors of PNG encoding, decoding and file writing.
public enum PNGError: Error, CustomStringConvertible, Equatable {
    /// Size or pixel buffer not acceptable.
    case invalidImage(String)
    /// A text chunk keyword or value not representable in PNG.
    case invalidText(key: String, reason: String)
    /// libpng failed to encode (its message).
    case encodeFailed(String)
    /// Not a decodable PNG (libpng's message, or why we refused).
    case decodeFailed(String)
    /// Reading or writing a file failed.
    case io(file: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidImage(reason): return "invalid image: \(reason)"
        case let .invalidText(key, reason): return "invalid PNG text chunk '\(key)': \(reason)"
        case let .encodeFailed(message): return "PNG encoding failed: \(message)"
        case let .decodeFailed(message): return "PNG decoding failed: \(message)"
        case let .io(file, reason): return "\(file): \(reason)"
        }
    }
}

public enum PNGWriter {
    /// Largest width or height accepted (libpng's default user limit).
    public static let maxDimension = 1_000_000

    /// Encodes 8-bit RGB pixels (row-major, `width * height * 3` bytes) as a PNG with the given
    /// text chunks in order (e.g. `[("parameters", infotext)]`).
    public static func encode(rgb: [UInt8], width: Int, height: Int,
                              text: [(key: String, value: String)] = []) throws -> Data {
        guard (1...maxDimension).contains(width), (1...maxDimension).contains(height) else {
            throw PNGError.invalidImage("size \(width)x\(height) is outside 1...\(maxDimension)")
        }
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, pixels <= Int.max / 3, rgb.count == pixels * 3 else {
            throw PNGError.invalidImage("\(rgb.count) bytes do not hold \(width)x\(height) RGB pixels (\(width * height * 3) bytes)")
        }
        let chunks = try text.map { try textChunk(key: $0.key, value: $0.value) }

        var png = try rgb.withUnsafeBytes { try encodeWithLibpng($0.baseAddress!, width: width, height: height) }

        // libpng's output starts with the 8-byte signature and the 25-byte IHDR chunk.
        let ihdrEnd = 8 + 25
        guard png.count > ihdrEnd, png[12..<16].elementsEqual("IHDR".utf8) else {
            throw PNGError.encodeFailed("unexpected libpng output (no IHDR at the start)")
        }
        if !chunks.isEmpty { png.insert(contentsOf: chunks.joined(), at: ihdrEnd) }
        return Data(png)
    }

    /// Encodes as `encode` does and writes atomically: the PNG goes to a temporary file in the same
    /// directory, is flushed, and renamed to `url`, so a failure never leaves a partial PNG (and an
    /// existing file at `url` stays as it was).
    public static func write(rgb: [UInt8], width: Int, height: Int, text: [(key: String, value: String)] = [],
                             to url: URL) throws {
        let data = try encode(rgb: rgb, width: width, height: height, text: text)
        try writeAtomically(data, to: url)
    }

    // MARK: libpng

    private static func encodeWithLibpng(_ pixels: UnsafeRawPointer, width: Int, height: Int) throws -> [UInt8] {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = UInt32(PNG_FORMAT_RGB)
        // An upper bound on the compressed size (libpng's PNG_IMAGE_PNG_SIZE_MAX, which does not
        // import into Swift): raw rows + deflate worst case + chunk overheads.
        let raw = (width * 3 + 1) * height
        var capacity = raw + (raw + 7) / 8 + (raw + 63) / 64 + 11 + 12 * (raw / 8192 + 1) + 1024
        for _ in 0..<2 {
            var buffer = [UInt8](repeating: 0, count: capacity)
            var size = png_alloc_size_t(capacity)
            let ok = buffer.withUnsafeMutableBytes { out in
                png_image_write_to_memory(&image, out.baseAddress, &size, 0, pixels, 0, nil)
            }
            png_image_free(&image)
            if ok != 0 {
                buffer.removeSubrange(Int(size)...)
                return buffer
            }
            // On "buffer too small" libpng reports the size it needs; anything else is an error.
            guard Int(size) > capacity else { break }
            capacity = Int(size)
            image.warning_or_error = 0
        }
        throw PNGError.encodeFailed(libpngMessage(image))
    }

    public static func libpngMessage(_ image: png_image) -> String {
        var message = image.message
        let text = withUnsafeBytes(of: &message) { raw -> String in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        return text.isEmpty ? "unknown libpng error" : text
    }

    // MARK: Text chunks

    /// A tEXt chunk when `value` is Latin-1, otherwise an uncompressed iTXt chunk (as PIL does).
    static func textChunk(key: String, value: String) throws -> [UInt8] {
        let keyword = try keywordBytes(key)
        if value.unicodeScalars.contains(where: { $0.value == 0 }) {
            throw PNGError.invalidText(key: key, reason: "the value contains a NUL character")
        }
        var data = keyword
        data.append(0)
        if value.unicodeScalars.allSatisfy({ $0.value <= 0xff }) {
            data.append(contentsOf: value.unicodeScalars.map { UInt8($0.value) })
            return try chunk("tEXt", data, key: key)
        }
        // compression flag 0, method 0, empty language tag, empty translated keyword, UTF-8 text.
        data.append(contentsOf: [0, 0, 0, 0])
        data.append(contentsOf: value.utf8)
        return try chunk("iTXt", data, key: key)
    }

    /// PNG keyword rules: 1-79 Latin-1 printable characters, no leading, trailing or double spaces.
    static func keywordBytes(_ key: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for scalar in key.unicodeScalars {
            let v = scalar.value
            guard (32...126).contains(v) || (161...255).contains(v) else {
                throw PNGError.invalidText(key: key, reason: "keywords must be printable Latin-1 characters")
            }
            bytes.append(UInt8(v))
        }
        guard (1...79).contains(bytes.count) else {
            throw PNGError.invalidText(key: key, reason: "keywords must be 1 to 79 characters long")
        }
        guard bytes.first != 0x20, bytes.last != 0x20, !zip(bytes, bytes.dropFirst()).contains(where: { $0 == 0x20 && $1 == 0x20 }) else {
            throw PNGError.invalidText(key: key, reason: "keywords may not have leading, trailing or consecutive spaces")
        }
        return bytes
    }

    static func chunk(_ type: String, _ data: [UInt8], key: String) throws -> [UInt8] {
        guard data.count <= Int(Int32.max) else { throw PNGError.invalidText(key: key, reason: "the value is too long") }
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 12)
        out.append(contentsOf: bigEndianBytes(UInt32(data.count)))
        let typeAndData = Array(type.utf8) + data
        out.append(contentsOf: typeAndData)
        out.append(contentsOf: bigEndianBytes(PNGWriter.crc32(typeAndData)))
        return out
    }

    /// CRC-32 of a chunk's type and data (zlib's, the one PNG specifies).
    public static func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        let array = Array(bytes)
        return array.withUnsafeBufferPointer { UInt32(CPNG.crc32(0, $0.baseAddress, uInt($0.count))) }
    }

    private static func bigEndianBytes(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
    }

    // MARK: Files

    /// Writes PNG bytes atomically: to a temporary file in the same directory, flushed, then
    /// renamed to `url`, so a failure never leaves a partial PNG (an existing file stays as it was).
    public static func writeAtomically(_ data: Data, to url: URL) throws {
        let path = url.path
        let directory = url.deletingLastPathComponent().path
        let temp = directory + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw PNGError.io(file: path, reason: "cannot create a file in \(directory): " + String(cString: strerror(errno)))
        }
        func fail(_ what: String) -> PNGError {
            let reason = what + ": " + String(cString: strerror(errno))
            unlink(temp)
            return PNGError.io(file: path, reason: reason)
        }
        let written: Bool = data.withUnsafeBytes { raw in
            guard var p = raw.baseAddress else { return true }
            var remaining = raw.count
            while remaining > 0 {
                #if canImport(Glibc)
                let n = Glibc.write(fd, p, remaining)
                #else
                let n = Darwin.write(fd, p, remaining)
                #endif
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                p += n
                remaining -= n
            }
            return true
        }
        guard written else { close(fd); throw fail("write") }
        guard fsync(fd) == 0 else { close(fd); throw fail("fsync") }
        guard close(fd) == 0 else { throw fail("close") }
        guard rename(temp, path) == 0 else { throw fail("rename") }
    }
}
