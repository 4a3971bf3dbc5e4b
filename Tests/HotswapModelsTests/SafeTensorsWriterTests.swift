import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
@testable import HotswapModels

@Suite("SafeTensors writer")
struct SafeTensorsWriterTests {
    func sampleTensors() -> [String: Tensor] {
        [
            "conv.weight": Tensor(shape: [2, 3], values: [1, -2.5, 0.1, 1e-3, 65504, -0.0]),
            "conv.bias": Tensor(shape: [2], values: [0.5, 1.0 / 3.0]),
            "scalar": Tensor(shape: [], values: [7]),
            "empty": Tensor(zeros: [0, 4]),
            "quote\"and\\name": Tensor(shape: [1], values: [2]),
        ]
    }

    @Test("F32 round trip is exact, with metadata, and the header is padded to 8 bytes")
    func roundTripF32() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file("out.safetensors")
        let tensors = sampleTensors()
        let metadata = ["format": "pt", "prompt": "a \"cat\", 猫\n"]
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: url)
        let file = try SafeTensorsFile(url: url)
        #expect(file.metadata == metadata)
        #expect(file.dataOffset % 8 == 0)
        #expect(Set(file.names) == Set(tensors.keys))
        for (name, t) in tensors {
            let back = try file.tensor(name)
            #expect(back.shape == t.shape, "\(name)")
            #expect(back.scalars.map(\.bitPattern) == t.scalars.map(\.bitPattern), "\(name)")
            #expect(file.infos[name]?.dtype == .F32)
        }
        // The Rust library lays tensors out without gaps: the last one ends at the end of file.
        let end = file.infos.values.map(\.dataRange.upperBound).max()!
        #expect(file.dataOffset + end == file.fileSize)
    }

    @Test("F16 and BF16 round trips round to nearest even", arguments: [SafeTensorsDType.F16, .BF16])
    func roundTrip16(dtype: SafeTensorsDType) throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file("out.safetensors")
        let tensors = sampleTensors()
        try SafeTensorsWriter.write(tensors, to: url, dtype: dtype)
        let file = try SafeTensorsFile(url: url)
        for (name, t) in tensors {
            #expect(file.infos[name]?.dtype == dtype)
            let expected = t.scalars.map { x -> Float in
                dtype == .F16 ? Float(Float16(x)) : Float(bitPattern: UInt32(Float16Conversion.bf16Bits(fromF32: x)) << 16)
            }
            #expect(try file.tensor(name).scalars.map(\.bitPattern) == expected.map(\.bitPattern), "\(name)")
        }
    }

    @Test("bfloat16 rounding: nearest, ties to even, NaN stays NaN")
    func bf16Rounding() {
        // 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties to even -> 1.
        #expect(Float16Conversion.bf16Bits(fromF32: 1 + 0x1p-8) == 0x3f80)
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) -> up.
        #expect(Float16Conversion.bf16Bits(fromF32: 1 + 3 * 0x1p-8) == 0x3f82)
        #expect(Float16Conversion.bf16Bits(fromF32: 1 + 0x1p-8 + 0x1p-20) == 0x3f81)
        #expect(Float16Conversion.bf16Bits(fromF32: -2) == 0xc000)
        #expect(Float(bitPattern: UInt32(Float16Conversion.bf16Bits(fromF32: .nan)) << 16).isNaN)
        #expect(Float16Conversion.bf16Bits(fromF32: .infinity) == 0x7f80)
    }

    @Test("a file written here reads back with the same names, shapes and dtypes as the fixtures")
    func rewriteFixture() throws {
        let source = try SafeTensorsFile(url: Fixtures.url("safetensors/f32.safetensors"))
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file("copy.safetensors")
        try SafeTensorsWriter.write(try source.allTensors(), metadata: source.metadata, to: url)
        let copy = try SafeTensorsFile(url: url)
        #expect(copy.metadata == source.metadata)
        for name in source.names {
            #expect(try copy.tensor(name).scalars == source.tensor(name).scalars)
        }
    }

    @Test("writing is atomic: a failure leaves nothing, a success replaces the old file")
    func atomic() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let missing = dir.url.appendingPathComponent("no-such-dir/out.safetensors")
        #expect(throws: SafeTensorsError.self) { try SafeTensorsWriter.write(sampleTensors(), to: missing) }
        #expect(!FileManager.default.fileExists(atPath: missing.path))

        let url = dir.file("out.safetensors")
        try SafeTensorsWriter.write(["a": Tensor(shape: [1], values: [1])], to: url)
        try SafeTensorsWriter.write(["b": Tensor(shape: [2], values: [2, 3])], to: url)
        #expect(try SafeTensorsFile(url: url).names == ["b"])
        // No temporary files left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["out.safetensors"])

        #expect(throws: SafeTensorsError.self) { try SafeTensorsWriter.write([:], to: url, dtype: .I64) }
        #expect(throws: SafeTensorsError.self) { try SafeTensorsWriter.write(["__metadata__": Tensor(zeros: [1])], to: url) }
    }

    @Test("the header matches the layout of the reference library")
    func headerLayout() throws {
        let bytes = SafeTensorsWriter.headerBytes(tensors: ["w": Tensor(zeros: [2])], names: ["w"],
                                                  metadata: ["k": "v"], dtype: .F32)
        let n = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
        #expect(n == bytes.count - 8)
        #expect(n % 8 == 0)
        let json = String(decoding: bytes.dropFirst(8), as: UTF8.self)
        #expect(json.hasPrefix(#"{"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#))
        // Padding after the JSON is spaces only.
        let closing = json.lastIndex(of: "}")!
        #expect(json[json.index(after: closing)...].allSatisfy { $0 == " " })
    }
}

@Suite("SafeTensors F16/BF16 conversion")
struct SafeTensorsConversionTests {
    @Test("F16 -> F32 is exact for all 65536 bit patterns")
    func allHalves() {
        let source = (0...0xffff).map { UInt16($0) }
        var out = [Float](repeating: 0, count: source.count)
        source.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                Float16Conversion.convertF16ToF32(s.baseAddress!, d.baseAddress!, count: s.count)
            }
        }
        var mismatches = 0
        for (bits, value) in zip(source, out) {
            let reference = Float(Float16(bitPattern: bits))
            if reference.isNaN {
                // NaN stays NaN with its sign and payload (signaling NaNs are not quieted, unlike
                // the compiler-rt conversion, so compare without the quiet bit).
                let payloadMask: UInt32 = ~(1 << 22)
                if !(value.isNaN && value.bitPattern & payloadMask == reference.bitPattern & payloadMask) { mismatches += 1 }
            } else if value.bitPattern != reference.bitPattern {
                mismatches += 1
            }
        }
        #expect(mismatches == 0)
    }

    @Test("parallel conversion of a large array matches the scalar reference")
    func parallelMatchesSerial() {
        let n = Float16Conversion.parallelThreshold * 3 + 12345  // several chunks plus a ragged end
        var x: UInt32 = 7
        let source = (0..<n).map { _ -> UInt16 in
            x = x &* 1_664_525 &+ 1_013_904_223
            return UInt16(truncatingIfNeeded: x >> 9)
        }
        var f16 = [Float](repeating: 0, count: n), bf16 = [Float](repeating: 0, count: n)
        source.withUnsafeBufferPointer { s in
            f16.withUnsafeMutableBufferPointer { Float16Conversion.convertF16ToF32(s.baseAddress!, $0.baseAddress!, count: n) }
            bf16.withUnsafeMutableBufferPointer { Float16Conversion.convertBF16ToF32(s.baseAddress!, $0.baseAddress!, count: n) }
        }
        var bad = 0
        for i in 0..<n {
            if f16[i].bitPattern != Float16Conversion.f32Bits(fromF16: source[i]) { bad += 1 }
            if bf16[i].bitPattern != UInt32(source[i]) << 16 { bad += 1 }
        }
        #expect(bad == 0)

        // And back: F32 -> F16 -> F32 is the identity on values that came from F16 (NaNs aside).
        var halves = [UInt16](repeating: 0, count: n)
        f16.withUnsafeBufferPointer { s in
            halves.withUnsafeMutableBufferPointer { Float16Conversion.convertF32ToF16(s.baseAddress!, $0.baseAddress!, count: n) }
        }
        let roundTripBad = (0..<n).filter { !f16[$0].isNaN && halves[$0] != source[$0] }.count
        #expect(roundTripBad == 0)
    }

    /// Load throughput of a 256M-element F16 tensor (1.5 GB on disk + in memory): opt-in, set
    /// HOTSWAP_BENCH=1. Prints GB/s counting 2 bytes read + 4 written per element.
    @Test("F16 load throughput (HOTSWAP_BENCH=1)", .enabled(if: ProcessInfo.processInfo.environment["HOTSWAP_BENCH"] == "1"))
    func benchmark() throws {
        let n = Int(ProcessInfo.processInfo.environment["HOTSWAP_BENCH_ELEMENTS"] ?? "") ?? (256 << 20)
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file("big.safetensors")
        do {
            let t = Tensor(zeros: [n])
            for i in stride(from: 0, to: n, by: 1) { t.data[i] = Float(i % 2048) * 0.01 - 10 }
            try SafeTensorsWriter.write(["big": t], to: url, dtype: .F16)
        }
        func now() -> Double { Date().timeIntervalSinceReferenceDate }
        var times: [Double] = []
        for _ in 0..<5 {
            let file = try SafeTensorsFile(url: url)
            let t0 = now()
            let t = try file.tensor("big")
            times.append(now() - t0)
            #expect(t.data[n - 1] == Float(Float16(Float((n - 1) % 2048) * 0.01 - 10)))
        }
        times.sort()
        for (label, dt) in [("best", times[0]), ("median", times[2])] {
            print(String(format: "F16 file -> F32 tensor, %@ of 5: %d elements in %.3f s = %.2f GB/s (6 B/element), %.2f G elements/s",
                         label, n, dt, Double(n) * 6 / dt / 1e9, Double(n) / dt / 1e9))
        }
        // Pure conversion between buffers already in memory (no page faults).
        let src = UnsafeMutablePointer<UInt16>.allocate(capacity: n)
        let dst = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { src.deallocate(); dst.deallocate() }
        src.initialize(repeating: 0x3c00, count: n)
        dst.initialize(repeating: 0, count: n)
        for (label, convert) in [("F16", Float16Conversion.convertF16ToF32), ("BF16", Float16Conversion.convertBF16ToF32)] {
            var best = Double.infinity
            for _ in 0..<3 {
                let t0 = now()
                convert(src, dst, n)
                best = min(best, now() - t0)
            }
            print(String(format: "%@ -> F32 in memory: %.3f s = %.2f GB/s, %.2f G elements/s",
                         label, best, Double(n) * 6 / best / 1e9, Double(n) / best / 1e9))
        }
    }
}

/// Cross-check with the reference library (opt-in: HOTSWAP_PYTHON=/path/to/python with torch and
/// safetensors): files written here load in Python with the same values and metadata.
@Suite("SafeTensors cross-check with the Python library",
       .enabled(if: ProcessInfo.processInfo.environment["HOTSWAP_PYTHON"] != nil))
struct SafeTensorsPythonTests {
    @Test("safetensors.safe_open reads our files", arguments: [SafeTensorsDType.F32, .F16, .BF16])
    func pythonReadsOurFile(dtype: SafeTensorsDType) throws {
        let python = ProcessInfo.processInfo.environment["HOTSWAP_PYTHON"]!
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file("check.safetensors")
        let tensors: [String: Tensor] = [
            "w": Tensor(shape: [2, 3], values: [1, -2, 0.5, 0.25, 3, -0.125]),
            "s": Tensor(shape: [], values: [4]),
            "e": Tensor(zeros: [0, 2]),
        ]
        try SafeTensorsWriter.write(tensors, metadata: ["format": "pt", "n": "猫"], to: url, dtype: dtype)
        let script = """
        import sys, json
        from safetensors import safe_open
        out = {}
        with safe_open(sys.argv[1], "pt") as f:
            out["metadata"] = f.metadata()
            for k in f.keys():
                t = f.get_tensor(k)
                out[k] = {"dtype": str(t.dtype), "shape": list(t.shape), "values": t.float().flatten().tolist()}
        print(json.dumps(out))
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
        let json = try #require(try JSONSerialization.jsonObject(with: output) as? [String: Any])
        #expect(json["metadata"] as? [String: String] == ["format": "pt", "n": "猫"])
        let torchDType = ["F32": "torch.float32", "F16": "torch.float16", "BF16": "torch.bfloat16"][dtype.rawValue]!
        for (name, t) in tensors {
            let entry = try #require(json[name] as? [String: Any], "\(name)")
            #expect(entry["dtype"] as? String == torchDType)
            #expect(entry["shape"] as? [Int] == t.shape)
            #expect((entry["values"] as? [Double])?.map { Float($0) } == t.scalars)
        }
    }
}
