import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
@testable import HotswapModels

/// Tests/Fixtures/safetensors/expected.json (written by Scripts/fixtures/safetensors.py).
private struct ExpectedFile: Decodable {
    struct TensorValues: Decodable {
        let dtype: String
        let shape: [Int]
        let values: [Double]
    }
    let metadata: [String: String]
    let tensors: [String: TensorValues]
}

/// A fresh temporary directory, removed by `cleanup()`.
struct TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> URL { url.appendingPathComponent(name) }
    func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// A safetensors file made by hand: 8-byte length (or `headerLength`), header text, data bytes.
func rawSafeTensors(header: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> Data {
    let json = Array(header.utf8)
    var bytes = withUnsafeBytes(of: (headerLength ?? UInt64(json.count)).littleEndian) { Array($0) }
    bytes += json
    bytes += data
    return Data(bytes)
}

@Suite("SafeTensors reader")
struct SafeTensorsReaderTests {
    static let fixtureNames = ["f32.safetensors", "f16.safetensors", "bf16.safetensors", "i64.safetensors", "mixed.safetensors"]

    @Test("fixtures written by the Python library read back exactly", arguments: fixtureNames)
    func fixtureValues(name: String) throws {
        let expected: [String: ExpectedFile] = try Fixtures.json("safetensors/expected.json")
        let want = try #require(expected[name])
        let file = try SafeTensorsFile(url: Fixtures.url("safetensors/\(name)"))
        #expect(file.metadata == want.metadata)
        #expect(Set(file.names) == Set(want.tensors.keys))
        #expect(file.infos.count == want.tensors.count)
        for (tensorName, values) in want.tensors {
            let info = try file.info(tensorName)
            #expect(info.dtype.rawValue == values.dtype, "\(tensorName)")
            #expect(info.shape == values.shape, "\(tensorName)")
            let t = try file.tensor(tensorName)
            #expect(t.shape == values.shape, "\(tensorName)")
            let got = t.scalars
            let ref = values.values.map { Float($0) }
            #expect(got.count == ref.count, "\(tensorName)")
            for (i, (g, r)) in zip(got, ref).enumerated() {
                // Exact, including the sign of zero.
                #expect(g.bitPattern == r.bitPattern, "\(name) \(tensorName)[\(i)]: \(g) != \(r)")
            }
        }
    }

    @Test("names are in data-offset order and infos hold the header")
    func namesInOffsetOrder() throws {
        let file = try SafeTensorsFile(url: Fixtures.url("safetensors/mixed.safetensors"))
        let begins = file.names.map { file.infos[$0]!.dataRange.lowerBound }
        #expect(begins == begins.sorted())
        #expect(file.infos["scalar"]?.shape == [])
        #expect(file.infos["empty"]?.shape == [0, 3])
        #expect(file.infos["empty"]?.dataRange.isEmpty == true)
        #expect(try file.tensor("scalar").scalars == [3.25])
        #expect(try file.tensor("empty").count == 0)
        #expect(file.metadata == ["kind": "mixed"])
        // The Python library pads the header so the data section is 8-byte aligned.
        #expect(file.dataOffset % 8 == 0)
    }

    @Test("F32 tensors borrow the mapping without a copy and keep it alive")
    func f32IsBorrowed() throws {
        let url = Fixtures.url("safetensors/f32.safetensors")
        var tensor: Tensor
        var expected: [Float]
        do {
            let file = try SafeTensorsFile(url: url)
            tensor = try file.tensor("conv_in.weight")
            let raw = try file.rawBytes("conv_in.weight")
            #expect(UnsafeRawPointer(tensor.data) == raw.baseAddress)
            expected = Array(raw.bindMemory(to: Float.self))
        }
        // The file object is gone; the tensor's storage still owns the mapping.
        #expect(tensor.scalars == expected)
        #expect(tensor.shape == [4, 3, 3, 3])
        // Writing into a borrowed weight is allowed (copy-on-write page) and never reaches the file.
        tensor.data[0] = 123
        #expect(tensor.data[0] == 123)
        let reread = try SafeTensorsFile(url: url).tensor("conv_in.weight")
        #expect(reread.data[0] == expected[0])
    }

    @Test("integer tensors read exactly, e.g. CLIP position_ids")
    func integers() throws {
        let file = try SafeTensorsFile(url: Fixtures.url("safetensors/i64.safetensors"))
        #expect(try file.integers("text_model.embeddings.position_ids") == Array(0..<77))
        #expect(try file.integers("big") == [-(1 << 40), (1 << 40) + 1, -1, 0])
        #expect(try file.tensor("text_model.embeddings.position_ids").shape == [1, 77])
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(url: Fixtures.url("safetensors/f16.safetensors")).integers("weight") }
    }

    @Test("raw bytes are exposed as stored")
    func rawBytes() throws {
        let file = try SafeTensorsFile(url: Fixtures.url("safetensors/mixed.safetensors"))
        #expect(Array(try file.rawBytes("u8")) == [0, 1, 255, 128])
        #expect(Array(try file.rawBytes("bool")) == [1, 0, 1])
        #expect(try file.rawBytes("i16").count == 4)
    }

    @Test("unknown tensor names give tensorNotFound naming file and tensor")
    func notFound() throws {
        let file = try SafeTensorsFile(url: Fixtures.url("safetensors/f32.safetensors"))
        do {
            _ = try file.tensor("nope")
            Issue.record("expected an error")
        } catch let error as SafeTensorsError {
            #expect(error == .tensorNotFound(file: file.url.path, tensor: "nope"))
            #expect(error.description.contains("f32.safetensors"))
            #expect(error.description.contains("'nope'"))
        }
    }

    @Test("misaligned data (header length not a multiple of 4) is copied and still exact")
    func misalignedData() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let values: [Float] = [1.5, -2, 3.25]
        let half: [Float16] = [0.5, -1, 2048]
        var data = values.withUnsafeBytes { Array($0) }
        data += half.withUnsafeBytes { Array($0) }
        // Header of odd length: data starts at an odd address.
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"h":{"dtype":"F16","shape":[3],"data_offsets":[12,18]}}"# + " "
        #expect((8 + header.utf8.count) % 2 == 1)
        let url = dir.file("odd.safetensors")
        try rawSafeTensors(header: header, data: data).write(to: url)
        let file = try SafeTensorsFile(url: url)
        #expect(try file.tensor("a").scalars == values)
        #expect(try file.tensor("h").scalars == [0.5, -1, 2048])
    }
}

@Suite("SafeTensors validation")
struct SafeTensorsValidationTests {
    /// Writes `data` to a temp file, expects SafeTensorsFile(url:) to throw an error matching
    /// `matches`, whose message names the file and every string in `mentions`.
    func expectRejected(_ data: Data, name: String = "model.safetensors", mentions: [String] = [],
                        sourceLocation: SourceLocation = #_sourceLocation,
                        _ matches: (SafeTensorsError) -> Bool) throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file(name)
        try data.write(to: url)
        do {
            let file = try SafeTensorsFile(url: url)
            Issue.record("expected an error, opened a file with \(file.names)", sourceLocation: sourceLocation)
        } catch let error as SafeTensorsError {
            #expect(matches(error), "unexpected error: \(error)", sourceLocation: sourceLocation)
            let message = error.description
            #expect(message.contains(url.path), "message does not name the file: \(message)", sourceLocation: sourceLocation)
            for m in mentions {
                #expect(message.contains(m), "message does not mention \(m): \(message)", sourceLocation: sourceLocation)
            }
        }
    }

    /// The header of a valid two-tensor file ("a": 4 F32, "b": 2 F16), with tweaks.
    func twoTensors(a: String = #""dtype":"F32","shape":[2,2],"data_offsets":[0,16]"#,
                    b: String = #""dtype":"F16","shape":[2],"data_offsets":[16,20]"#) -> String {
        "{\"a\":{\(a)},\"b\":{\(b)}}"
    }

    let data20 = [UInt8](repeating: 0, count: 20)

    @Test("the well-formed base case opens")
    func baseCase() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file("ok.safetensors")
        try rawSafeTensors(header: twoTensors(), data: data20).write(to: url)
        let file = try SafeTensorsFile(url: url)
        #expect(file.names == ["a", "b"])
        #expect(try file.tensor("b").scalars == [0, 0])
    }

    @Test("missing file")
    func missingFile() throws {
        let url = URL(fileURLWithPath: "/nonexistent-dir/model.safetensors")
        do {
            _ = try SafeTensorsFile(url: url)
            Issue.record("expected an error")
        } catch let error as SafeTensorsError {
            guard case .cannotOpen = error else { Issue.record("unexpected \(error)"); return }
            #expect(error.description.contains("/nonexistent-dir/model.safetensors"))
        }
    }

    @Test("file shorter than 8 bytes")
    func tooSmall() throws {
        try expectRejected(Data([1, 0, 0])) { if case .fileTooSmall(_, 3) = $0 { return true }; return false }
        try expectRejected(Data()) { if case .fileTooSmall(_, 0) = $0 { return true }; return false }
    }

    @Test("header length past the end of the file")
    func headerPastEOF() throws {
        try expectRejected(rawSafeTensors(header: twoTensors(), data: data20, headerLength: 1000), mentions: ["1000"]) {
            if case .headerPastEndOfFile(_, 1000, _) = $0 { return true }; return false
        }
    }

    @Test("huge header length")
    func headerHuge() throws {
        try expectRejected(rawSafeTensors(header: "{}", headerLength: UInt64.max)) {
            if case .headerTooLarge(_, UInt64.max, _) = $0 { return true }; return false
        }
        try expectRejected(rawSafeTensors(header: "{}", headerLength: 200_000_000)) {
            if case .headerTooLarge = $0 { return true }; return false
        }
    }

    @Test("truncated data section: the last tensor's offsets fall outside", arguments: [1, 3, 4])
    func truncatedData(cut: Int) throws {
        try expectRejected(rawSafeTensors(header: twoTensors(), data: Array(data20.dropLast(cut))),
                           mentions: ["'b'", "[16, 20)", "\(20 - cut) bytes"]) {
            if case .offsetsOutOfBounds(_, "b", 16, 20, 20 - cut) = $0 { return true }; return false
        }
    }

    @Test("header that is not JSON, not an object, or has duplicate keys", arguments: [
        "{\"a\":", "not json", "{\"a\":{\"dtype\":\"F32\"}} trailing", "[1,2]", "\"str\"", "{\"a\":1,\"a\":2}",
        String(repeating: "[", count: 10_000), "{\"a\":{\"dtype\":\"F\u{1}32\"}}", "",
    ])
    func badJSON(header: String) throws {
        try expectRejected(rawSafeTensors(header: header)) { if case .invalidHeader = $0 { return true }; return false }
    }

    @Test("header bytes that are not UTF-8")
    func notUTF8() throws {
        // {"<ff fe>":1}
        var bytes = withUnsafeBytes(of: UInt64(8).littleEndian) { Array($0) }
        bytes += [0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]
        try expectRejected(Data(bytes)) { if case .invalidHeader = $0 { return true }; return false }
    }

    @Test("__metadata__ must map strings to strings")
    func badMetadata() throws {
        try expectRejected(rawSafeTensors(header: #"{"__metadata__":{"format":1}}"#), mentions: ["format"]) {
            if case .invalidMetadata = $0 { return true }; return false
        }
        try expectRejected(rawSafeTensors(header: #"{"__metadata__":"pt"}"#)) {
            if case .invalidMetadata = $0 { return true }; return false
        }
    }

    @Test("data_offsets outside the data section")
    func offsetsOutside() throws {
        try expectRejected(rawSafeTensors(header: twoTensors(b: #""dtype":"F16","shape":[2],"data_offsets":[30,34]"#),
                                          data: data20),
                           mentions: ["'b'", "[30, 34)", "20 bytes"]) {
            $0 == .offsetsOutOfBounds(file: "", tensor: "b", begin: 30, end: 34, dataSize: 20).withFile($0)
        }
    }

    @Test("data_offsets with begin > end")
    func offsetsReversed() throws {
        try expectRejected(rawSafeTensors(header: twoTensors(b: #""dtype":"F16","shape":[2],"data_offsets":[20,16]"#),
                                          data: data20), mentions: ["'b'"]) {
            if case .invalidOffsets(_, "b", 20, 16) = $0 { return true }; return false
        }
    }

    @Test("overlapping tensors")
    func overlap() throws {
        try expectRejected(rawSafeTensors(header: twoTensors(b: #""dtype":"F16","shape":[2],"data_offsets":[12,16]"#),
                                          data: data20), mentions: ["'a'", "'b'"]) {
            if case .overlappingTensors(_, "b", 12..<16, "a", 0..<16) = $0 { return true }; return false
        }
    }

    @Test("dtype size x element count must equal the byte length")
    func byteLengthMismatch() throws {
        // 3 F16 elements = 6 bytes, offsets span 4.
        try expectRejected(rawSafeTensors(header: twoTensors(b: #""dtype":"F16","shape":[3],"data_offsets":[16,20]"#),
                                          data: data20), mentions: ["'b'", "F16", "6", "4"]) {
            if case .byteLengthMismatch(_, "b", .F16, [3], 6, 4) = $0 { return true }; return false
        }
        // Element count overflowing Int.
        try expectRejected(rawSafeTensors(header: twoTensors(b: #""dtype":"F16","shape":[4294967296,4294967296],"data_offsets":[16,20]"#),
                                          data: data20), mentions: ["'b'"]) {
            if case .invalidTensorEntry(_, "b", _) = $0 { return true }; return false
        }
    }

    @Test("unknown dtype")
    func unknownDType() throws {
        try expectRejected(rawSafeTensors(header: twoTensors(b: #""dtype":"F8_E4M3","shape":[4],"data_offsets":[16,20]"#),
                                          data: data20), mentions: ["'b'", "F8_E4M3"]) {
            if case .unknownDType(_, "b", "F8_E4M3") = $0 { return true }; return false
        }
    }

    @Test("malformed tensor entries", arguments: [
        #""dtype":"F16","shape":[-2],"data_offsets":[16,20]"#,
        #""dtype":"F16","shape":[2.0],"data_offsets":[16,20]"#,
        #""dtype":"F16","shape":"2","data_offsets":[16,20]"#,
        #""dtype":"F16","shape":[2]"#,
        #""shape":[2],"data_offsets":[16,20]"#,
        #""dtype":16,"shape":[2],"data_offsets":[16,20]"#,
        #""dtype":"F16","shape":[2],"data_offsets":[16]"#,
        #""dtype":"F16","shape":[2],"data_offsets":[16,20,24]"#,
        #""dtype":"F16","shape":[2],"data_offsets":[16,1e3]"#,
        #""dtype":"F16","shape":[2],"data_offsets":[16,99999999999999999999999]"#,
    ])
    func malformedEntry(entry: String) throws {
        try expectRejected(rawSafeTensors(header: twoTensors(b: entry), data: data20), mentions: ["'b'"]) {
            if case .invalidTensorEntry(_, "b", _) = $0 { return true }; return false
        }
    }

    @Test("a tensor entry that is not an object")
    func entryNotObject() throws {
        try expectRejected(rawSafeTensors(header: #"{"w":[1,2]}"#), mentions: ["'w'"]) {
            if case .invalidTensorEntry(_, "w", _) = $0 { return true }; return false
        }
    }

    @Test("random corruption of a real file never crashes: it is rejected or every tensor reads")
    func fuzz() throws {
        let original = try [UInt8](Data(contentsOf: Fixtures.url("safetensors/mixed.safetensors")))
        let headerEnd = 8 + Int(original.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let dir = try TempDir()
        defer { dir.cleanup() }
        var rng = SplitMix64(seed: 2024)
        var opened = 0, rejected = 0
        for iteration in 0..<600 {
            var bytes = original
            switch iteration % 4 {
            case 0:  // flip a few header bytes to printable ASCII (keeps it mostly JSON-like)
                for _ in 0...(rng.next() % 3) {
                    bytes[8 + Int(rng.next() % UInt64(headerEnd - 8))] = UInt8(32 + rng.next() % 95)
                }
            case 1:  // change a digit (offsets and shapes)
                let digits = (8..<headerEnd).filter { (48...57).contains(bytes[$0]) }
                bytes[digits[Int(rng.next() % UInt64(digits.count))]] = UInt8(48 + rng.next() % 10)
            case 2:  // truncate
                bytes.removeLast(Int(rng.next() % UInt64(bytes.count)))
            default:  // corrupt the length prefix
                bytes[Int(rng.next() % 8)] = UInt8(truncatingIfNeeded: rng.next())
            }
            // A new file each time, written with plain POSIX calls: rewriting one file in place
            // (truncate + write, as Data.write does) costs ~10 ms per round on ext4 here.
            let url = dir.file("fuzz\(iteration).safetensors")
            defer { unlink(url.path) }
            let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            #expect(fd >= 0)
            #expect(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count)
            close(fd)
            do {
                let file = try SafeTensorsFile(url: url)
                for name in file.names {
                    let t = try file.tensor(name)
                    #expect(t.count == file.infos[name]!.elementCount)
                    _ = try file.rawBytes(name)
                }
                opened += 1
            } catch is SafeTensorsError {
                rejected += 1
            }
        }
        #expect(opened + rejected == 600)
        #expect(rejected > 100)
    }

    @Test("error messages read well")
    func messageFormat() {
        let e = SafeTensorsError.offsetsOutOfBounds(file: "model.safetensors", tensor: "conv_in.weight", begin: 10, end: 20, dataSize: 16)
        #expect(e.description == "model.safetensors: tensor 'conv_in.weight' has data_offsets [10, 20) outside the data section of 16 bytes")
    }
}

private extension SafeTensorsError {
    /// `self` with the file name taken from `other` (to compare cases without spelling the path).
    func withFile(_ other: SafeTensorsError) -> SafeTensorsError {
        guard case let .offsetsOutOfBounds(file, _, _, _, _) = other,
              case let .offsetsOutOfBounds(_, t, b, e, d) = self else { return self }
        return .offsetsOutOfBounds(file: file, tensor: t, begin: b, end: e, dataSize: d)
    }
}

/// Small deterministic PRNG for fuzzing.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
