import Foundation
import HotswapTestSupport
import Testing
@testable import HotswapPipeline

/// A fresh temporary directory, removed by `cleanup()`.
private struct TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-png-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// Deterministic test pixels.
private func pattern(width: Int, height: Int) -> [UInt8] {
    (0..<(width * height * 3)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ ($0 / 7) &* 11) }
}

/// The chunk types of a PNG in order.
private func chunkTypes(_ data: Data) -> [String] {
    let bytes = [UInt8](data)
    var types: [String] = []
    var offset = 8
    while offset + 12 <= bytes.count {
        let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        types.append(String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self))
        offset += 12 + length
    }
    return types
}

@Suite("PNG writer and reader")
struct PNGTests {
    @Test("round trip: pixels, size and text chunks (Latin-1 and not)", arguments: [(1, 1), (7, 5), (64, 3), (513, 17)])
    func roundTrip(width: Int, height: Int) throws {
        let rgb = pattern(width: width, height: height)
        let text: [(key: String, value: String)] = [
            ("parameters", "a cat in a hat, 猫, 🎩\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a"),
            ("Software", "café hotswap"),
            ("empty", ""),
        ]
        let data = try PNGWriter.encode(rgb: rgb, width: width, height: height, text: text)
        let image = try PNGReader.read(data)
        #expect(image.width == width)
        #expect(image.height == height)
        #expect(image.rgb == rgb)
        #expect(image.text == ["parameters": text[0].value, "Software": "café hotswap", "empty": ""])
        // Non-Latin-1 goes to iTXt, Latin-1 to tEXt, all before the image data.
        let types = chunkTypes(data)
        #expect(types.first == "IHDR")
        #expect(types.last == "IEND")
        #expect(types.filter { $0 == "iTXt" }.count == 1)
        #expect(types.filter { $0 == "tEXt" }.count == 2)
        #expect(types.lastIndex(of: "tEXt")! < types.firstIndex(of: "IDAT")!)
        #expect(PNGReader.text(data) == image.text)
    }

    @Test("write to a file atomically and read it back")
    func writeFile() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.url.appendingPathComponent("out.png")
        let rgb = pattern(width: 9, height: 4)
        try PNGWriter.write(rgb: rgb, width: 9, height: 4, text: [("parameters", "x")], to: url)
        let image = try PNGReader.read(url: url)
        #expect(image.rgb == rgb)
        #expect(image.text == ["parameters": "x"])
        // Overwrite: replaced as a whole; no temporary files left.
        try PNGWriter.write(rgb: [1, 2, 3], width: 1, height: 1, to: url)
        #expect(try PNGReader.read(url: url).rgb == [1, 2, 3])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["out.png"])
    }

    @Test("writing into a missing directory fails and leaves no file")
    func writeMissingDirectory() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.url.appendingPathComponent("missing/out.png")
        #expect(throws: PNGError.self) { try PNGWriter.write(rgb: [0, 0, 0], width: 1, height: 1, to: url) }
        #expect(!FileManager.default.fileExists(atPath: url.path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).isEmpty)
    }

    @Test("a failed encode does not touch an existing file")
    func failedEncodeKeepsFile() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.url.appendingPathComponent("keep.png")
        try PNGWriter.write(rgb: [9, 9, 9], width: 1, height: 1, to: url)
        let before = try Data(contentsOf: url)
        #expect(throws: PNGError.self) { try PNGWriter.write(rgb: [1, 2], width: 1, height: 1, to: url) }
        #expect(try Data(contentsOf: url) == before)
    }

    @Test("invalid images are refused before libpng sees them")
    func invalidImages() {
        #expect(throws: PNGError.self) { try PNGWriter.encode(rgb: [], width: 0, height: 0) }
        #expect(throws: PNGError.self) { try PNGWriter.encode(rgb: [1, 2, 3], width: 1, height: 2) }
        #expect(throws: PNGError.self) { try PNGWriter.encode(rgb: [1, 2, 3], width: -1, height: -3) }
        #expect(throws: PNGError.self) { try PNGWriter.encode(rgb: [1, 2, 3], width: 2_000_000, height: 1) }
    }

    @Test("invalid text chunks are refused", arguments: [
        "", " lead", "trail ", "double  space", String(repeating: "k", count: 80), "tab\tkey", "猫", "nul\u{0}",
    ])
    func invalidKeywords(key: String) {
        #expect(throws: PNGError.self) { try PNGWriter.encode(rgb: [0, 0, 0], width: 1, height: 1, text: [(key, "v")]) }
    }

    @Test("text values with NUL are refused; a 79-character keyword is fine")
    func textLimits() throws {
        #expect(throws: PNGError.self) { try PNGWriter.encode(rgb: [0, 0, 0], width: 1, height: 1, text: [("k", "a\u{0}b")]) }
        let key = String(repeating: "k", count: 79)
        let data = try PNGWriter.encode(rgb: [0, 0, 0], width: 1, height: 1, text: [(key, "v")])
        #expect(try PNGReader.read(data).text == [key: "v"])
    }

    @Test("garbage and damaged data give errors, never a crash")
    func garbage() throws {
        let good = try PNGWriter.encode(rgb: pattern(width: 16, height: 16), width: 16, height: 16, text: [("k", "v")])
        var cases: [Data] = [
            Data(), Data("not a png at all".utf8), Data(good.prefix(8)), Data(good.prefix(40)),
            Data(good.prefix(good.count / 2)), Data(good.dropLast(30)),
            Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 97 &+ 13) }),
        ]
        // Flip bytes in the header, at the start of the image data (zlib header) and in its middle.
        // (A flip in the zlib stream's trailing Adler-32 can go unnoticed: libpng stops inflating
        // once it has every row, and the pixels are then intact.)
        let idat = try #require(good.range(of: Data("IDAT".utf8))).upperBound
        for position in [20, idat, idat + 1, good.count / 2] {
            var bad = good
            bad[position] ^= 0x5a
            cases.append(bad)
        }
        for data in cases {
            #expect(throws: PNGError.self) { try PNGReader.read(data) }
        }
    }

    @Test("random corruption never crashes: an error, or an image of the right size")
    func fuzz() throws {
        let good = [UInt8](try PNGWriter.encode(rgb: pattern(width: 40, height: 30), width: 40, height: 30,
                                                 text: [("parameters", "a cat, 猫"), ("k", "v")]))
        var state: UInt64 = 99
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        var decoded = 0, rejected = 0
        for iteration in 0..<600 {
            var bytes = good
            if iteration % 3 == 2 {
                bytes.removeLast(next() % bytes.count)
            } else {
                for _ in 0...(next() % 4) { bytes[next() % bytes.count] = UInt8(truncatingIfNeeded: next()) }
            }
            do {
                let image = try PNGReader.read(Data(bytes))
                #expect(image.rgb.count == image.width * image.height * 3)
                decoded += 1
            } catch is PNGError {
                rejected += 1
            }
        }
        #expect(decoded + rejected == 600)
        #expect(rejected > 100)
    }

    @Test("a PNG missing only its IEND chunk still decodes (libpng stops after the last row, like PIL)")
    func missingIEND() throws {
        let rgb = pattern(width: 16, height: 16)
        let good = try PNGWriter.encode(rgb: rgb, width: 16, height: 16)
        #expect(try PNGReader.read(Data(good.dropLast(12))).rgb == rgb)
    }

    @Test("a header claiming an enormous image is refused without allocating it")
    func hugeHeader() throws {
        var bytes: [UInt8] = PNGReader.pngSignature
        var ihdr: [UInt8] = Array("IHDR".utf8)
        for v in [UInt32(1_000_000), UInt32(1_000_000)] {
            ihdr += [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
        }
        ihdr += [8, 2, 0, 0, 0]  // 8-bit RGB
        let crc = PNGWriter.crc32(ihdr)
        bytes += [0, 0, 0, 13] + ihdr + [UInt8(crc >> 24), UInt8(crc >> 16 & 0xff), UInt8(crc >> 8 & 0xff), UInt8(crc & 0xff)]
        // An empty IDAT: libpng reads the header up to the first IDAT.
        let idat: [UInt8] = Array("IDAT".utf8)
        let idatCRC = PNGWriter.crc32(idat)
        bytes += [0, 0, 0, 0] + idat + [UInt8(idatCRC >> 24), UInt8(idatCRC >> 16 & 0xff), UInt8(idatCRC >> 8 & 0xff), UInt8(idatCRC & 0xff)]
        let iend: [UInt8] = Array("IEND".utf8)
        let iendCRC = PNGWriter.crc32(iend)
        bytes += [0, 0, 0, 0] + iend + [UInt8(iendCRC >> 24), UInt8(iendCRC >> 16 & 0xff), UInt8(iendCRC >> 8 & 0xff), UInt8(iendCRC & 0xff)]
        do {
            _ = try PNGReader.read(Data(bytes))
            Issue.record("expected an error")
        } catch let error as PNGError {
            #expect(error.description.contains("1000000x1000000"))
            #expect(error.description.contains("larger than the limits"))
        }
    }

    @Test("reading a missing file names it")
    func missingFile() {
        do {
            _ = try PNGReader.read(url: URL(fileURLWithPath: "/nonexistent/x.png"))
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("/nonexistent/x.png"))
        }
    }

    // PNGs written by PIL (Pillow 11) — other color types, and A1111-style text.

    @Test("RGBA from PIL: alpha is dropped, colors kept")
    func pilRGBA() throws {
        let data = Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAYAAACddGYaAAAAIklEQVR4nGP4z8Dwn+E/QwMDw38GBi4ROY0TKUb/GZmYWQBt5wdI+42/BgAAAABJRU5ErkJggg==")!
        let image = try PNGReader.read(data)
        #expect(image.width == 3 && image.height == 2)
        #expect(image.rgb == [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 200, 100, 50, 1, 2, 3])
    }

    @Test("grayscale, palette and 16-bit PNGs from PIL become RGB")
    func pilOtherTypes() throws {
        let gray = try PNGReader.read(Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAAAAABX3VL4AAAADklEQVR4nGNg8GVo+A8AAzkBzbFhd+4AAAAASUVORK5CYII=")!)
        #expect(gray.width == 2 && gray.height == 2)
        #expect(gray.rgb == [0, 0, 0, 77, 77, 77, 128, 128, 128, 255, 255, 255])
        let palette = try PNGReader.read(Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABAQMAAADO7O3JAAAABlBMVEUJCAfIlmTdt9RaAAAACklEQVR4nGNoAAAAggCBd81ytgAAAABJRU5ErkJggg==")!)
        #expect(palette.rgb == [200, 150, 100, 9, 8, 7])
        let g16 = try PNGReader.read(Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABEAAAAACB2fwVAAAADUlEQVR4nGNgYPj/HwADAgH/5ncLrgAAAABJRU5ErkJggg==")!)
        #expect(g16.rgb == [0, 0, 0, 255, 255, 255])
    }

    @Test("text written by PIL the way A1111 writes it (iTXt for non-Latin-1, tEXt otherwise)")
    func pilText() throws {
        let data = Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAAImlUWHRwYXJhbWV0ZXJzAAAAAABhIGNhdCDnjKsKU3RlcHM6IDIwqceLuwAAAA10RVh0U29mdHdhcmUAY2Fm6bBYyIwAAAAMSURBVHicY2BlYwcAACYAE1pq/9IAAAAASUVORK5CYII=")!
        let image = try PNGReader.read(data)
        #expect(image.rgb == [5, 6, 7])
        #expect(image.text == ["parameters": "a cat 猫\nSteps: 20", "Software": "café"])
        // And we write the same chunk bytes as PIL does for the same text.
        let ours = try PNGWriter.encode(rgb: [5, 6, 7], width: 1, height: 1,
                                        text: [("parameters", "a cat 猫\nSteps: 20"), ("Software", "café")])
        func chunk(_ d: Data, _ type: String) -> Data? {
            guard let r = d.range(of: Data(type.utf8)) else { return nil }
            let lengthStart = r.lowerBound - 4
            let n = d[lengthStart..<r.lowerBound].reduce(0) { $0 << 8 | Int($1) }
            return d[lengthStart..<(r.upperBound + n + 4)]
        }
        #expect(chunk(ours, "iTXt") == chunk(data, "iTXt"))
        #expect(chunk(ours, "tEXt") == chunk(data, "tEXt"))
    }
}

/// Cross-check with Pillow (opt-in: HOTSWAP_PYTHON=/path/to/python with PIL installed): PIL opens
/// our PNG and sees the same pixels and the same `parameters` text (tEXt and iTXt).
@Suite("PNG cross-check with PIL", .enabled(if: ProcessInfo.processInfo.environment["HOTSWAP_PYTHON"] != nil))
struct PNGPILTests {
    @Test("PIL reads our PNG")
    func pilReadsOurPNG() throws {
        let python = ProcessInfo.processInfo.environment["HOTSWAP_PYTHON"]!
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.url.appendingPathComponent("check.png")
        let rgb = pattern(width: 33, height: 7)
        let prompt = "a cat 猫, 🎩\nSteps: 20, Sampler: Euler a"
        try PNGWriter.write(rgb: rgb, width: 33, height: 7, text: [("parameters", prompt), ("Software", "café")], to: url)
        let script = """
        import sys, json
        from PIL import Image
        im = Image.open(sys.argv[1]); im.load()
        print(json.dumps({"size": list(im.size), "mode": im.mode, "rgb": list(im.tobytes()), "info": {k: v for k, v in im.info.items() if isinstance(v, str)}}))
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script, url.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        // Foundation's waitUntilExit polls a run loop, and on Linux that path raced inside
        // libdispatch (a rare crash of the test process); a termination handler does not use it.
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        exited.wait()
        #expect(process.terminationStatus == 0)
        struct Result: Decodable { let size: [Int]; let mode: String; let rgb: [UInt8]; let info: [String: String] }
        let result = try JSONDecoder().decode(Result.self, from: output)
        #expect(result.size == [33, 7])
        #expect(result.mode == "RGB")
        #expect(result.rgb == rgb)
        #expect(result.info["parameters"] == prompt)
        #expect(result.info["Software"] == "café")
    }
}
