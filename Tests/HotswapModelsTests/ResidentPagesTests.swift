import Foundation
import HotswapTestSupport
import Testing
import HotswapCore
@testable import HotswapModels

/// TensorStorage.releaseResidentPages: Conv2d calls it on a memory-mapped F32 weight once it keeps
/// the weight's Winograd-domain copy. The pages must leave the process and read back unchanged; a
/// converted (F16) weight, whose memory is not a file, must not be touched.
@Suite("Releasing resident weight pages")
struct ResidentPagesTests {
    /// Resident kB of the mapping that holds `address` (/proc/self/smaps), nil if not found.
    func residentKilobytes(containing address: UnsafeRawPointer) throws -> Int? {
        // Read to EOF: procfs files report size 0, which size-based readers take at its word.
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/smaps") else { return nil }
        defer { try? handle.close() }
        let smaps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        let target = UInt(bitPattern: address)
        var inside = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
                let bounds = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = bounds.count == 2 && bounds[0] <= target && target < bounds[1]
            } else if inside, fields.first == "Rss:", fields.count >= 2 {
                return Int(fields[1])
            }
        }
        return nil
    }

    func values(_ count: Int) -> [Float] { (0..<count).map { Float($0 % 1000) * 0.25 - 7 } }

    @Test("F32 mapped weight: pages leave the process and read back the same values")
    func mappedWeight() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file("w.safetensors")
        let count = 1 << 20  // 4 MB
        try SafeTensorsWriter.write(["w": Tensor(shape: [count], values: values(count))], to: url)
        let file = try SafeTensorsFile(url: url)
        let weight = try file.tensor("w")
        #expect(weight.scalars == values(count))  // every page touched
        let before = try #require(try residentKilobytes(containing: weight.data))
        weight.storage.releaseResidentPages()
        let after = try #require(try residentKilobytes(containing: weight.data))
        #expect(before - after >= 4000, "resident \(before) kB -> \(after) kB")
        #expect(weight.scalars == values(count))
    }

    @Test("F16 source pages leave the process once converted to F32")
    func convertedSourcePages() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file("src16.safetensors")
        let count = 4 << 20  // 8 MB of F16
        try SafeTensorsWriter.write(["w": Tensor(shape: [count], values: values(count))], to: url, dtype: .F16)
        let file = try SafeTensorsFile(url: url)
        let raw = try file.rawBytes("w")
        var sum = 0
        for i in stride(from: 0, to: raw.count, by: 4096) { sum &+= Int(raw[i]) }  // fault every page in
        let before = try #require(try residentKilobytes(containing: raw.baseAddress!))
        let weight = try file.tensor("w")
        let after = try #require(try residentKilobytes(containing: raw.baseAddress!))
        #expect(before - after >= 7000, "resident \(before) kB -> \(after) kB (sum \(sum))")
        #expect(weight.scalars == values(count))
        #expect(try file.tensor("w").scalars == values(count))  // converting again reads the file back
    }

    @Test("Converted (F16) weight: memory is not a file, nothing is released")
    func convertedWeight() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file("w16.safetensors")
        let count = 1 << 20
        try SafeTensorsWriter.write(["w": Tensor(shape: [count], values: values(count))], to: url, dtype: .F16)
        let weight = try SafeTensorsFile(url: url).tensor("w")
        let expected = weight.scalars
        weight.storage.releaseResidentPages()
        #expect(weight.scalars == expected)
        #expect(expected == values(count))  // these values are exact in F16
    }
}
