import Foundation
import HotswapCore

/// Errors finding or assembling the weight files of a diffusers model folder.
public enum WeightFilesError: Error, CustomStringConvertible, Equatable {
    /// Neither `<base>.safetensors` nor `<base>.safetensors.index.json` (nor their fp16 variants).
    case noWeights(directory: String, baseName: String)
    /// Only PyTorch pickles (`.bin`) are present.
    case pytorchBinOnly(directory: String, files: [String])
    /// The shard index is unreadable or malformed.
    case invalidIndex(file: String, reason: String)
    /// A shard named in the index does not exist.
    case missingShard(index: String, shard: String)
    /// The index maps a tensor to a shard that does not contain it.
    case tensorMissingFromShard(index: String, tensor: String, shard: String)
    /// A tensor appears in two shards.
    case duplicateTensor(index: String, tensor: String, shards: [String])

    public var description: String {
        switch self {
        case let .noWeights(directory, base):
            return "no \(base).safetensors or \(base).safetensors.index.json (nor .fp16 variants) in \(directory)"
        case let .pytorchBinOnly(directory, files):
            return "\(directory) has only PyTorch .bin weights (\(files.joined(separator: ", "))): PyTorch .bin "
                + "weights are not supported; convert to safetensors"
        case let .invalidIndex(file, reason):
            return "\(file): invalid shard index: \(reason)"
        case let .missingShard(index, shard):
            return "\(index): shard '\(shard)' does not exist"
        case let .tensorMissingFromShard(index, tensor, shard):
            return "\(index): tensor '\(tensor)' is mapped to shard '\(shard)' but that shard does not contain it"
        case let .duplicateTensor(index, tensor, shards):
            return "\(index): tensor '\(tensor)' appears in more than one shard (\(shards.joined(separator: ", ")))"
        }
    }
}

/// Loads the weights of one component folder of a diffusers model (unet/, vae/, text_encoder/).
public enum WeightFiles {
    /// The files that `load` would read, without reading them: one `.safetensors` file, or the
    /// shards of an index. Looks for, in order: `<base>.safetensors`, `<base>.safetensors.index.json`,
    /// `<base>.fp16.safetensors`, `<base>.safetensors.index.fp16.json` (diffusers' variant naming).
    public static func locate(directory: URL, baseName: String) throws -> (index: URL?, files: [URL]) {
        let fm = FileManager.default
        func exists(_ name: String) -> URL? {
            let url = directory.appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            return fm.fileExists(atPath: url.path, isDirectory: &isDirectory) && !isDirectory.boolValue ? url : nil
        }
        let candidates: [(single: String, index: String)] = [
            ("\(baseName).safetensors", "\(baseName).safetensors.index.json"),
            ("\(baseName).fp16.safetensors", "\(baseName).safetensors.index.fp16.json"),
        ]
        for (single, index) in candidates {
            if let url = exists(single) { return (nil, [url]) }
            if let url = exists(index) {
                let map = try readIndex(url)
                return (url, Set(map.values).sorted().map { directory.appendingPathComponent($0) })
            }
        }
        let contents = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
        let bins = contents.filter { $0.hasSuffix(".bin") || $0.hasSuffix(".bin.index.json") }.sorted()
        if !bins.isEmpty { throw WeightFilesError.pytorchBinOnly(directory: directory.path, files: bins) }
        throw WeightFilesError.noWeights(directory: directory.path, baseName: baseName)
    }

    /// Every tensor of the folder's weights as Float32 (F32 data borrowed from the mapped files,
    /// F16/BF16 converted once here). Sharded weights: every shard is loaded; every tensor the
    /// index names must be in its shard, and no tensor may appear in two shards.
    public static func load(directory: URL, baseName: String) throws -> [String: Tensor] {
        let (indexURL, files) = try locate(directory: directory, baseName: baseName)
        guard let indexURL else { return try SafeTensorsFile(url: files[0]).allTensors() }

        let indexPath = indexURL.path
        let weightMap = try readIndex(indexURL)
        var tensors: [String: Tensor] = [:]
        var origin: [String: String] = [:]  // tensor -> shard it came from
        for url in files {
            let shard = url.lastPathComponent
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw WeightFilesError.missingShard(index: indexPath, shard: shard)
            }
            let file = try SafeTensorsFile(url: url)
            for name in file.names {
                if let other = origin[name] {
                    throw WeightFilesError.duplicateTensor(index: indexPath, tensor: name, shards: [other, shard])
                }
                origin[name] = shard
                tensors[name] = try file.tensor(name)
            }
        }
        for (name, shard) in weightMap.sorted(by: { $0.key < $1.key }) where origin[name] != shard {
            if let actual = origin[name] {
                // Present, but in another shard than the index says: the index is wrong.
                throw WeightFilesError.invalidIndex(
                    file: indexPath, reason: "tensor '\(name)' is mapped to '\(shard)' but is in '\(actual)'")
            }
            throw WeightFilesError.tensorMissingFromShard(index: indexPath, tensor: name, shard: shard)
        }
        return tensors
    }

    /// The `weight_map` of a shard index, validated: shard names are plain file names in the same
    /// folder (no paths, so an index cannot point outside its folder).
    static func readIndex(_ url: URL) throws -> [String: String] {
        let path = url.path
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw WeightFilesError.invalidIndex(file: path, reason: "cannot read: \(error.localizedDescription)")
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(data)
        } catch {
            throw WeightFilesError.invalidIndex(file: path, reason: "not valid JSON: \(error)")
        }
        guard case let .object(members) = json else {
            throw WeightFilesError.invalidIndex(file: path, reason: "expected a JSON object, found \(json.kindName)")
        }
        guard let mapValue = members.first(where: { $0.key == "weight_map" })?.value else {
            throw WeightFilesError.invalidIndex(file: path, reason: "missing \"weight_map\"")
        }
        guard case let .object(entries) = mapValue else {
            throw WeightFilesError.invalidIndex(file: path, reason: "\"weight_map\" is \(mapValue.kindName), not an object")
        }
        var map: [String: String] = [:]
        for (tensor, value) in entries {
            guard case let .string(shard) = value else {
                throw WeightFilesError.invalidIndex(file: path, reason: "shard of '\(tensor)' is \(value.kindName), not a string")
            }
            guard !shard.isEmpty, !shard.contains("/"), !shard.contains("\\"), shard != ".", shard != ".." else {
                throw WeightFilesError.invalidIndex(file: path, reason: "shard '\(shard)' of '\(tensor)' is not a plain file name")
            }
            map[tensor] = shard
        }
        guard !map.isEmpty else { throw WeightFilesError.invalidIndex(file: path, reason: "\"weight_map\" is empty") }
        return map
    }
}
