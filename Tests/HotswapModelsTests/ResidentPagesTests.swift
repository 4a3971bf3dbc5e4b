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

    /// Whether the page holding `address` is mapped into the process (/proc/self/pagemap bit 63).
    func isMapped(_ address: UnsafeRawPointer) -> Bool {
        let fd = open("/proc/self/pagemap", O_RDONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var entry: UInt64 = 0
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let read = pread(fd, &entry, 8, off_t(Int(bitPattern: address) / page * 8))
        return read == 8 && (entry >> 63) & 1 == 1
    }

    /// The first page lying wholly inside a tensor's memory (what `releaseResidentPages` can drop).
    func innerPage(_ tensor: Tensor) -> UnsafeRawPointer? {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: tensor.data), end = start + tensor.count * 4
        let first = (start + page - 1) / page * page
        return first + page <= end ? UnsafeRawPointer(bitPattern: first) : nil
    }

    @Test("A render's idle release: the bases of fused UNet layers leave, the others stay until the decode")
    func fusedBasesLeaveFirst() throws {
        try #require(Tuning.current.releaseIdleWeightPages, "HOTSWAP_RELEASE_IDLE_WEIGHTS=0 is set")
        let model = try StableDiffusionModel(directory: Fixtures.url("models/sd1-tiny"))  // F32: mapped
        let layers = model.unet.linears.sorted { $0.key < $1.key }.map(\.value)
            .filter { $0.baseWeight.storage.isFileBacked && innerPage($0.baseWeight) != nil }
        try #require(layers.count >= 2)
        let (fused, plain) = (layers[0], layers[1])
        let (fusedPage, plainPage) = (innerPage(fused.baseWeight)!, innerPage(plain.baseWeight)!)
        fused.weight = fused.baseWeight.copy()  // what a fuse installs: an anonymous buffer
        defer { fused.weight = fused.baseWeight }
        _ = (fused.baseWeight.scalars, plain.baseWeight.scalars)  // every page read in
        #expect(isMapped(fusedPage) && isMapped(plainPage))
        model.releaseIdlePages(.unetFusedBases)
        #expect(!isMapped(fusedPage), "a fused layer's base stays resident")
        #expect(isMapped(plainPage), "an unfused layer's base was released while the UNet still needs it")
        model.releaseIdlePages(.unet)
        #expect(!isMapped(plainPage))
        #expect(fused.weight.scalars == fused.baseWeight.scalars)  // the base reads back unchanged
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
