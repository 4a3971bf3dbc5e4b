import Foundation
import Testing
import HotswapCore
@testable import HotswapModels

@Suite("Weight files of a model folder")
struct SafeTensorsWeightFilesTests {
    let base = "diffusion_pytorch_model"

    func t(_ values: [Float]) -> Tensor { Tensor(shape: [values.count], values: values) }

    func writeIndex(_ map: [String: String], to url: URL) throws {
        let entries = map.keys.sorted().map { "\"\($0)\": \"\(map[$0]!)\"" }.joined(separator: ", ")
        try Data("{\"metadata\": {\"total_size\": 0}, \"weight_map\": {\(entries)}}".utf8).write(to: url)
    }

    /// Expects `load` to throw a WeightFilesError matching `matches` whose message mentions `mentions`.
    func expectLoadError(_ dir: URL, baseName: String? = nil, mentions: [String],
                         sourceLocation: SourceLocation = #_sourceLocation, _ matches: (WeightFilesError) -> Bool) {
        do {
            let tensors = try WeightFiles.load(directory: dir, baseName: baseName ?? base)
            Issue.record("expected an error, loaded \(tensors.keys.sorted())", sourceLocation: sourceLocation)
        } catch let error as WeightFilesError {
            #expect(matches(error), "unexpected error \(error)", sourceLocation: sourceLocation)
            for m in mentions {
                #expect(error.description.contains(m), "\(error.description) does not mention \(m)", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("single file")
    func single() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try SafeTensorsWriter.write(["a": t([1, 2]), "b": t([3])], to: dir.file("model.safetensors"))
        let tensors = try WeightFiles.load(directory: dir.url, baseName: "model")
        #expect(tensors.keys.sorted() == ["a", "b"])
        #expect(tensors["a"]?.scalars == [1, 2])
    }

    @Test("the fp16 variant is used only when there is no plain file")
    func fp16Variant() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try SafeTensorsWriter.write(["w": t([0.5, 2])], to: dir.file("\(base).fp16.safetensors"), dtype: .F16)
        #expect(try WeightFiles.load(directory: dir.url, baseName: base)["w"]?.scalars == [0.5, 2])
        try SafeTensorsWriter.write(["w": t([9, 9])], to: dir.file("\(base).safetensors"))
        #expect(try WeightFiles.load(directory: dir.url, baseName: base)["w"]?.scalars == [9, 9])
    }

    @Test("sharded weights: every shard is loaded")
    func sharded() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let shard1 = "\(base)-00001-of-00002.safetensors", shard2 = "\(base)-00002-of-00002.safetensors"
        try SafeTensorsWriter.write(["a": t([1]), "b": t([2, 3])], to: dir.file(shard1))
        try SafeTensorsWriter.write(["c": t([4])], to: dir.file(shard2), dtype: .F16)
        try writeIndex(["a": shard1, "b": shard1, "c": shard2], to: dir.file("\(base).safetensors.index.json"))
        let located = try WeightFiles.locate(directory: dir.url, baseName: base)
        #expect(located.files.map(\.lastPathComponent) == [shard1, shard2])
        let tensors = try WeightFiles.load(directory: dir.url, baseName: base)
        #expect(tensors.keys.sorted() == ["a", "b", "c"])
        #expect(tensors["b"]?.scalars == [2, 3])
        #expect(tensors["c"]?.scalars == [4])
    }

    @Test("sharded fp16 variant index (diffusers naming)")
    func shardedVariant() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let shard = "\(base).fp16-00001-of-00001.safetensors"
        try SafeTensorsWriter.write(["a": t([1])], to: dir.file(shard), dtype: .F16)
        try writeIndex(["a": shard], to: dir.file("\(base).safetensors.index.fp16.json"))
        #expect(try WeightFiles.load(directory: dir.url, baseName: base)["a"]?.scalars == [1])
    }

    @Test("a missing shard is named")
    func missingShard() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try SafeTensorsWriter.write(["a": t([1])], to: dir.file("s1.safetensors"))
        try writeIndex(["a": "s1.safetensors", "b": "s2.safetensors"], to: dir.file("\(base).safetensors.index.json"))
        expectLoadError(dir.url, mentions: ["s2.safetensors", "\(base).safetensors.index.json"]) {
            if case .missingShard(_, "s2.safetensors") = $0 { return true }; return false
        }
    }

    @Test("a tensor missing from its shard is named")
    func tensorMissingFromShard() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try SafeTensorsWriter.write(["a": t([1])], to: dir.file("s1.safetensors"))
        try writeIndex(["a": "s1.safetensors", "ghost": "s1.safetensors"], to: dir.file("\(base).safetensors.index.json"))
        expectLoadError(dir.url, mentions: ["'ghost'", "s1.safetensors"]) {
            if case .tensorMissingFromShard(_, "ghost", "s1.safetensors") = $0 { return true }; return false
        }
    }

    @Test("a tensor in two shards is rejected")
    func duplicate() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try SafeTensorsWriter.write(["a": t([1])], to: dir.file("s1.safetensors"))
        try SafeTensorsWriter.write(["a": t([2]), "b": t([3])], to: dir.file("s2.safetensors"))
        try writeIndex(["a": "s1.safetensors", "b": "s2.safetensors"], to: dir.file("\(base).safetensors.index.json"))
        expectLoadError(dir.url, mentions: ["'a'", "s1.safetensors", "s2.safetensors"]) {
            if case .duplicateTensor(_, "a", _) = $0 { return true }; return false
        }
    }

    @Test("malformed indexes", arguments: [
        "not json", "[]", "{\"metadata\": {}}", "{\"weight_map\": []}", "{\"weight_map\": {}}",
        "{\"weight_map\": {\"a\": 3}}", "{\"weight_map\": {\"a\": \"../outside.safetensors\"}}",
        "{\"weight_map\": {\"a\": \"/etc/passwd\"}}",
    ])
    func badIndex(text: String) throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try Data(text.utf8).write(to: dir.file("\(base).safetensors.index.json"))
        expectLoadError(dir.url, mentions: ["\(base).safetensors.index.json"]) {
            if case .invalidIndex = $0 { return true }; return false
        }
    }

    @Test("no weights: the error names the folder and the file names looked for")
    func noWeights() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let unet = dir.url.appendingPathComponent("unet")
        try FileManager.default.createDirectory(at: unet, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: unet.appendingPathComponent("config.json"))
        expectLoadError(unet, mentions: ["\(base).safetensors", ".safetensors.index.json", unet.path]) {
            if case .noWeights = $0 { return true }; return false
        }
    }

    @Test("a .bin-only folder is refused with a conversion hint")
    func binOnly() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try Data([0x80, 0x02]).write(to: dir.file("pytorch_model.bin"))
        expectLoadError(dir.url, baseName: "model",
                        mentions: ["PyTorch .bin weights are not supported; convert to safetensors", "pytorch_model.bin"]) {
            if case .pytorchBinOnly = $0 { return true }; return false
        }
    }

    @Test("a corrupt single file surfaces the SafeTensorsError naming the file")
    func corruptSingle() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let url = dir.file("\(base).safetensors")
        try Data([1, 2, 3]).write(to: url)
        do {
            _ = try WeightFiles.load(directory: dir.url, baseName: base)
            Issue.record("expected an error")
        } catch let error as SafeTensorsError {
            #expect(error.description.contains(url.path))
        }
    }
}
