import Foundation
import HotswapCore
import HotswapModels

/// One module's low-rank update, ready to apply: delta = scale * up * down in the layer's
/// [out, in * kh * kw] layout.
public struct LoRALayerUpdate {
    public let component: LoRAComponent
    /// diffusers module path inside the component.
    public let path: String
    public let layer: LoRATargetLayer
    /// [rank, in] for a linear layer, [rank, in, kh, kw] for a convolution.
    public let down: Tensor
    /// [out, rank]
    public let up: Tensor
    public let rank: Int
    public let alpha: Float
    /// alpha / rank (the file's scale, before the request's).
    public let scale: Float
}

/// The identity of a file's contents as far as the cache cares: size and modification time.
public struct FileSignature: Hashable, Sendable {
    public let size: Int
    public let modified: Int64   // nanoseconds since 1970

    public init(url: URL) throws {
        var st = stat()
        guard stat(url.path, &st) == 0 else {
            throw LoRAError.unreadable(file: url.path, reason: String(cString: strerror(errno)))
        }
        size = Int(st.st_size)
        modified = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }
}

/// A parsed adapter for one model: every module matched to its layer and shape-checked, the
/// weights in memory of their own (Float32), so applying it again reads no file.
public final class LoRAAdapter {
    public let url: URL
    public let format: AdapterFormat
    public let signature: FileSignature
    public let updates: [LoRALayerUpdate]
    public let metadata: [String: String]
    let dataOffset: Int
    /// A1111's hash: `sshs_model_hash` from the metadata, else SHA-256 of the file after its
    /// header. Computed on first use (it reads the whole file), then kept.
    public private(set) lazy var hash: String = LoRAHash.a1111Hash(path: url.path, metadata: metadata, dataOffset: dataOffset)
    /// Bytes of weights held.
    public var byteSize: Int { updates.reduce(0) { $0 + ($1.down.count + $1.up.count) * 4 } }

    init(url: URL, format: AdapterFormat, signature: FileSignature, updates: [LoRALayerUpdate],
         metadata: [String: String], dataOffset: Int) {
        self.url = url
        self.format = format
        self.signature = signature
        self.updates = updates
        self.metadata = metadata
        self.dataOffset = dataOffset
    }

    /// Reads, matches and checks a file against `targets`. Every problem is collected first: keys
    /// in no known layout, keys that match no layer, down/up pairs with a missing half, shapes
    /// that do not fit; any of them throws before a tensor is read.
    public static func load(url: URL, targets: LoRATargets, alphaConvention: AlphaConvention = .diffusers) throws -> LoRAAdapter {
        let signature = try FileSignature(url: url)
        let file = try AdapterFile(url: url)
        let plan = try match(file, targets: targets)
        try file.checkValues()
        let diffusersAlphas = alphaConvention == .diffusers
            ? AlphaConvention.diffusersAlphas(plan.map { ($0.entry, $0.path) }) : [:]
        var updates: [LoRALayerUpdate] = []
        updates.reserveCapacity(plan.count)
        do {
            for (entry, path, layer) in plan {
                let weightShape = layer.weightShape
                let rank = entry.rank
                let downShape: [Int] = weightShape.count == 4 ? [rank] + weightShape.dropFirst() : [rank, weightShape[1]]
                let down = try owned(file.safetensors, entry.downKey!).reshaped(downShape)
                let up = try owned(file.safetensors, entry.upKey!).reshaped([weightShape[0], rank])
                var (alpha, _, scale) = file.alphaAndRank(entry, modulePath: path)
                if let effective = diffusersAlphas[entry.id] {
                    alpha = effective
                    scale = effective / Float(rank)
                }
                updates.append(LoRALayerUpdate(component: entry.component, path: path, layer: layer, down: down, up: up,
                                               rank: rank, alpha: alpha, scale: scale))
            }
        } catch let error as LoRAError {
            throw error
        } catch {
            throw LoRAError.unreadable(file: url.path, reason: "\(error)")
        }
        return LoRAAdapter(url: url, format: file.format, signature: signature, updates: updates,
                           metadata: file.metadata, dataOffset: file.safetensors.dataOffset)
    }

    /// Matches every module of `file` to a layer of `targets`, or throws listing what does not fit.
    public static func match(_ file: AdapterFile, targets: LoRATargets) throws
        -> [(entry: AdapterModuleEntry, path: String, layer: LoRATargetLayer)] {
        let name = file.url.path
        if !file.unsupportedKeys.isEmpty { throw LoRAError.unsupportedKeys(file: name, keys: file.unsupportedKeys) }
        guard !file.modules.isEmpty else { throw LoRAError.empty(file: name) }
        var plan: [(entry: AdapterModuleEntry, path: String, layer: LoRATargetLayer)] = []
        var unmatched: [String] = []
        var problems: [LoRAError.ShapeProblem] = []
        var seen: Set<String> = []
        for entry in file.modules {
            guard let (path, layer) = targets.resolve(entry) else {
                unmatched += [entry.downKey, entry.upKey, entry.alphaKey].compactMap { $0 }
                continue
            }
            guard let _ = entry.downKey else {
                throw LoRAError.incompletePair(file: name, module: path, missing: "its down (lora_A / lora_down) weight")
            }
            guard let _ = entry.upKey else {
                throw LoRAError.incompletePair(file: name, module: path, missing: "its up (lora_B / lora_up) weight")
            }
            let key = "\(entry.component.rawValue):\(path)"
            if !seen.insert(key).inserted {
                unmatched += [entry.downKey, entry.upKey].compactMap { $0 }   // the same layer twice
                continue
            }
            if !fits(entry, layer.weightShape) {
                problems.append(.init(module: "\(entry.component.rawValue).\(path)", layerShape: layer.weightShape,
                                      downShape: entry.downShape, upShape: entry.upShape))
                continue
            }
            plan.append((entry, path, layer))
        }
        if !unmatched.isEmpty { throw LoRAError.unmatchedKeys(file: name, keys: unmatched, matched: plan.count + problems.count) }
        if !problems.isEmpty { throw LoRAError.shapeMismatch(file: name, problems: problems) }
        return plan
    }

    /// down [r, in] or [r, in, 1, 1] and up [out, r] or [out, r, 1, 1] for a linear layer or
    /// 1x1 convolution; down [r, in, kh, kw] and up [out, r, 1, 1] for a k x k convolution.
    static func fits(_ entry: AdapterModuleEntry, _ weight: [Int]) -> Bool {
        let down = entry.downShape, up = entry.upShape
        guard down.count >= 2, up.count >= 2, down[0] > 0, up[1] == down[0], up[0] == weight[0] else { return false }
        guard up.count == 2 || (up.count == 4 && up[2] == 1 && up[3] == 1) else { return false }
        let kernel = weight.count == 4 ? Array(weight[2...]) : [1, 1]
        if down.count == 2 { return kernel == [1, 1] && down[1] == weight[1] }
        return down.count == 4 && down[1] == weight[1] && Array(down[2...]) == kernel
    }

    /// A tensor in memory of its own (F32 tensors would otherwise borrow the file mapping).
    static func owned(_ file: SafeTensorsFile, _ key: String) throws -> Tensor {
        let tensor = try file.tensor(key)
        return try file.info(key).dtype == .F32 ? tensor.copy() : tensor
    }
}
