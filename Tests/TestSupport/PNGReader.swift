import Foundation
import HotswapTestSupport
import CPNG
import HotswapPipeline

// PNG decoding for tests, the HTTP layer and img2img inputs.
//
// Pixels come from libpng's simplified read API (png_image_begin_read_from_memory /
// png_image_finish_read), which catches libpng's errors internally (see PNGWriter.swift for why
// no other libpng API is safe to call from Swift) and returns them as a message: malformed,
// truncated or hostile data gives a PNGError, never a crash. libpng converts every PNG type —
// gray, gray+alpha, palette, RGB, RGBA, 1 to 16 bits — to 8-bit sRGB RGB(A); alpha is dropped
// (not composited).
//
// Text chunks are not available through the simplified API, so they are read by walking the
// chunk list in Swift with bounds checks on every length: tEXt (Latin-1) and uncompressed iTXt
// (UTF-8, as PNGWriter, A1111 and ComfyUI write them) are returned; chunks with a bad CRC,
// compressed text (zTXt, compressed iTXt) and malformed text chunks are skipped, as libpng skips
// bad ancillary chunks. When a keyword repeats, the last value wins (as in PIL's `image.info`).

public enum PNGReader {
    /// Largest number of pixels decoded (32 Mpixel, 128 MB of RGBA); bigger images are refused
    /// before any pixel memory is allocated.
    public static let maxPixels = 1 << 25
    /// Largest width or height decoded.
    public static let maxDimension = 16384

    public static func read(_ data: Data) throws -> (width: Int, height: Int, rgb: [UInt8], text: [String: String]) {
        let (width, height, rgb) = try data.withUnsafeBytes { try decodePixels($0) }
        let text = data.withUnsafeBytes { textChunks($0) }
        return (width, height, rgb, text)
    }

    public static func read(url: URL) throws -> (width: Int, height: Int, rgb: [UInt8], text: [String: String]) {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw PNGError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        do {
            return try read(data)
        } catch let PNGError.decodeFailed(message) {
            throw PNGError.decodeFailed("\(url.path): \(message)")
        }
    }

    /// Only the text chunks (cheap: no pixel decoding). Empty for data that is not a PNG.
    public static func text(_ data: Data) -> [String: String] {
        data.withUnsafeBytes { textChunks($0) }
    }

    // MARK: Pixels

    private static func decodePixels(_ bytes: UnsafeRawBufferPointer) throws -> (Int, Int, [UInt8]) {
        guard bytes.count >= 8, let base = bytes.baseAddress else { throw PNGError.decodeFailed("not a PNG (too short)") }
        guard bytes.prefix(8).elementsEqual(pngSignature) else { throw PNGError.decodeFailed("not a PNG (bad signature)") }
        try checkChunkLengths(bytes)
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_memory(&image, base, bytes.count) != 0 else {
            let message = PNGWriter.libpngMessage(image)
            png_image_free(&image)
            throw PNGError.decodeFailed(message)
        }
        let width = Int(image.width), height = Int(image.height)
        guard width > 0, height > 0, width <= maxDimension, height <= maxDimension, width * height <= maxPixels else {
            png_image_free(&image)
            throw PNGError.decodeFailed("image of \(width)x\(height) pixels is larger than the limits "
                                        + "(\(maxDimension) pixels a side, \(maxPixels) pixels)")
        }
        let hasAlpha = image.format & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0
        let channels = hasAlpha ? 4 : 3
        // PNG_FORMAT_RGBA is a macro expression Swift does not import: RGB | ALPHA.
        image.format = UInt32(PNG_FORMAT_RGB) | (hasAlpha ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0)
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        let ok = pixels.withUnsafeMutableBytes { out in
            png_image_finish_read(&image, nil, out.baseAddress, 0, nil)
        }
        png_image_free(&image)  // finish_read frees on its own; harmless when already freed
        guard ok != 0 else { throw PNGError.decodeFailed(PNGWriter.libpngMessage(image)) }
        guard hasAlpha else { return (width, height, pixels) }
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        rgb.withUnsafeMutableBufferPointer { dst in
            pixels.withUnsafeBufferPointer { src in
                for i in 0..<(width * height) {
                    dst[3 * i] = src[4 * i]
                    dst[3 * i + 1] = src[4 * i + 1]
                    dst[3 * i + 2] = src[4 * i + 2]
                }
            }
        }
        return (width, height, rgb)
    }

    /// Every chunk must lie inside the data. libpng trusts a chunk's length field enough to
    /// allocate that much (up to 2 GB) before finding out the data is not there; checking first
    /// bounds any allocation for a chunk by the size of the input.
    private static func checkChunkLengths(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 8
        while bytes.count - offset >= 8 {
            let length = Int(UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16
                             | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3]))
            guard length <= bytes.count - offset - 12 else {
                throw PNGError.decodeFailed("chunk at byte \(offset) claims \(length) bytes, past the end of the data")
            }
            let isEnd = bytes[offset + 4] == UInt8(ascii: "I") && bytes[offset + 5] == UInt8(ascii: "E")
                && bytes[offset + 6] == UInt8(ascii: "N") && bytes[offset + 7] == UInt8(ascii: "D")
            offset += 12 + length
            if isEnd { return }
        }
    }

    // MARK: Text

    public static let pngSignature: [UInt8] = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

    static func textChunks(_ bytes: UnsafeRawBufferPointer) -> [String: String] {
        var text: [String: String] = [:]
        guard bytes.count >= 8, bytes.prefix(8).elementsEqual(pngSignature) else { return text }
        var offset = 8
        while bytes.count - offset >= 12 {
            let length = Int(UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16
                             | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3]))
            guard length <= Int(Int32.max), length <= bytes.count - offset - 12 else { break }
            let typeStart = offset + 4
            let type = UnsafeRawBufferPointer(rebasing: bytes[typeStart..<(typeStart + 4)])
            let data = UnsafeRawBufferPointer(rebasing: bytes[(typeStart + 4)..<(typeStart + 4 + length)])
            let crcAt = typeStart + 4 + length
            let storedCRC = UInt32(bytes[crcAt]) << 24 | UInt32(bytes[crcAt + 1]) << 16
                | UInt32(bytes[crcAt + 2]) << 8 | UInt32(bytes[crcAt + 3])
            offset = crcAt + 4
            if type.elementsEqual("IEND".utf8) { break }
            let isText = type.elementsEqual("tEXt".utf8), isIText = type.elementsEqual("iTXt".utf8)
            guard isText || isIText else { continue }
            guard PNGWriter.crc32(UnsafeRawBufferPointer(rebasing: bytes[typeStart..<crcAt])) == storedCRC else { continue }
            if let (key, value) = isText ? parseText(data) : parseIText(data) { text[key] = value }
        }
        return text
    }

    private static func latin1(_ bytes: UnsafeRawBufferPointer.SubSequence) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(UnicodeScalar(b)) }
        return String(s)
    }

    /// tEXt: keyword, NUL, Latin-1 text.
    private static func parseText(_ data: UnsafeRawBufferPointer) -> (String, String)? {
        guard let nul = data.firstIndex(of: 0), nul >= 1, nul <= 79 else { return nil }
        return (latin1(data[..<nul]), latin1(data[(nul + 1)...]))
    }

    /// iTXt: keyword, NUL, compression flag, method, language tag, NUL, translated keyword, NUL, UTF-8 text.
    private static func parseIText(_ data: UnsafeRawBufferPointer) -> (String, String)? {
        guard let nul = data.firstIndex(of: 0), nul >= 1, nul <= 79, data.count >= nul + 3 else { return nil }
        let compressed = data[nul + 1]
        guard compressed == 0 else { return nil }  // compressed iTXt: skipped (no zlib here)
        let rest = data[(nul + 3)...]
        guard let langEnd = rest.firstIndex(of: 0) else { return nil }
        let afterLang = data[(langEnd + 1)...]
        guard let tkeyEnd = afterLang.firstIndex(of: 0) else { return nil }
        guard let value = String(validating: data[(tkeyEnd + 1)...], as: UTF8.self) else { return nil }
        return (latin1(data[..<nul]), value)
    }
}
