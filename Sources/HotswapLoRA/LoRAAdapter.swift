import Foundation
import HotswapCore
import HotswapModels

/// One module's update, ready to apply to its layer: at request scale s the layer's weight becomes
/// W + s * (scale * up @ down) for a low-rank update (fused, or at runtime) or W + s * dense for
/// the others (LoHa, LoKr, full diffs, DoRA's D - W; their file factors already inside), and its
/// bias b + s * bias.
public struct LoRALayerUpdate {
    public let component: LoRAComponent
    /// diffusers module path inside the component.
    public let path: String
    public let layer: LoRATargetLayer
    public let kind: AdapterModuleKind
    public let isDoRA: Bool
    /// A low-rank update: down [rank, in] for a linear layer, [rank, in, kh, kw] for a convolution
    /// (a LoCon Tucker core folded in); up [out, rank]. Nil for dense updates.
    public let down: Tensor?
    public let up: Tensor?
    /// A dense update [out, in * kh * kw], file factors applied. Nil for low-rank ones.
    public let dense: Tensor?
    /// The bias update [out] (lora_up.bias / lora_B.bias times alpha / rank, or diff_b).
    public let bias: Tensor?
    public let rank: Int
    public let alpha: Float
    /// alpha / rank (the file's scale, before the request's) for low-rank updates; 1 for dense.
    public let scale: Float

    /// Bytes of weights held.
    var byteSize: Int { ((down?.count ?? 0) + (up?.count ?? 0) + (dense?.count ?? 0) + (bias?.count ?? 0)) * 4 }
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
    public var byteSize: Int { updates.reduce(0) { $0 + $1.byteSize } }
    /// "LoHa", "LoKr", "a full diff", "DoRA" or "LoRA": the first update that decides the mode.
    public var kindDescription: String {
        if updates.contains(where: \.isDoRA) { return "DoRA" }
        switch updates.first(where: { $0.dense != nil })?.kind {
        case .loha: return "LoHa"
        case .lokr: return "LoKr"
        case .diff: return "a full diff"
        default: return "LoRA"
        }
    }

    /// Whether every update can apply at runtime (low-rank weights, biases): LoHa, LoKr, full diffs
    /// and DoRA fuse only.
    public var runtimeCapable: Bool { updates.allSatisfy { $0.dense == nil } }

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
                var (alpha, rank, scale) = file.alphaAndRank(entry, modulePath: path)
                if let effective = diffusersAlphas[entry.id] {
                    alpha = effective
                    scale = effective / Float(rank)
                }
                updates.append(try update(entry, path: path, layer: layer, file: file.safetensors,
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
            let keys = entry.tensors.values.map(\.key).sorted()
            guard let (path, layer) = targets.resolve(entry) else {
                unmatched += keys
                continue
            }
            guard let kind = entry.kind else {
                throw LoRAError.incompletePair(file: name, module: path, missing: entry.tensors.keys.contains { $0 != .alpha && $0 != .doraScale && $0 != .magnitude }
                                               ? "one algorithm's tensors (it mixes LoRA, LoHa, LoKr or diff keys: \(keys.joined(separator: ", ")))"
                                               : "its weights (it has only \(keys.joined(separator: ", ")))")
            }
            if let missing = missingTensor(entry, kind: kind) {
                throw LoRAError.incompletePair(file: name, module: path, missing: missing)
            }
            let key = "\(entry.component.rawValue):\(path)"
            if !seen.insert(key).inserted {
                unmatched += keys   // the same layer twice
                continue
            }
            if !fits(entry, kind: kind, layer.weightShape) {
                let detail = kind == .lora && entry.tensors[.mid] == nil
                    ? "lora down \(entry.downShape), up \(entry.upShape)"
                    : entry.tensors.filter { $0.key != .alpha }.map { "\($0.key.rawValue) \($0.value.shape)" }.sorted().joined(separator: ", ")
                problems.append(.init(module: "\(entry.component.rawValue).\(path)", layerShape: layer.weightShape, detail: detail))
                continue
            }
            plan.append((entry, path, layer))
        }
        if !unmatched.isEmpty {
            // Name the two bases when they are known to differ (SDXL vs the SD1.x/SD2.x UNet family).
            let made = AdapterInfo.guessBase(file), model = targets.modelBase
            let xl = { (base: String) in base == "SDXL" }
            let known = ["SD1.x", "SD2.x", "SDXL", "SD1.x/SD2.x"]
            let differ = known.contains(made) && made != model && (xl(made) != xl(model) || !made.contains("/") && !model.contains("/"))
            let bases = differ ? "made for \(made); this model is \(model)" : nil
            throw LoRAError.unmatchedKeys(file: name, keys: unmatched, matched: plan.count + problems.count, bases: bases)
        }
        if !problems.isEmpty { throw LoRAError.shapeMismatch(file: name, problems: problems) }
        return plan
    }

    /// What a module of `kind` lacks to be complete, or nil.
    static func missingTensor(_ entry: AdapterModuleEntry, kind: AdapterModuleKind) -> String? {
        let has = { (role: AdapterTensorRole) in entry.tensors[role] != nil }
        switch kind {
        case .lora:
            if !has(.down) && !has(.up) && has(.upBias) { return nil }     // a bias-only module
            if !has(.down) { return "its down (lora_A / lora_down) weight" }
            if !has(.up) { return "its up (lora_B / lora_up) weight" }
        case .loha:
            for role in [AdapterTensorRole.hadaW1A, .hadaW1B, .hadaW2A, .hadaW2B] where !has(role) { return role.rawValue }
            if has(.hadaT1) != has(.hadaT2) { return has(.hadaT1) ? "hada_t2 (hada_t1 is there)" : "hada_t1 (hada_t2 is there)" }
        case .lokr:
            if !has(.lokrW1) && !(has(.lokrW1A) && has(.lokrW1B)) { return "lokr_w1 (or lokr_w1_a and lokr_w1_b)" }
            if !has(.lokrW2) && !(has(.lokrW2A) && has(.lokrW2B)) { return "lokr_w2 (or lokr_w2_a and lokr_w2_b)" }
        case .diff:
            break
        }
        return nil
    }

    /// Whether the module's tensors make an update of the layer's shape (and bias/magnitude shapes).
    static func fits(_ entry: AdapterModuleEntry, kind: AdapterModuleKind, _ weight: [Int]) -> Bool {
        let out = weight[0], inputs = weight[1]
        let kernel = weight.count == 4 ? Array(weight[2...]) : [1, 1]
        let k = kernel[0] * kernel[1]
        let s = { (role: AdapterTensorRole) in entry.shape(role) }
        func count(_ shape: [Int]?) -> Int { shape?.reduce(1, *) ?? 0 }
        if let bias = s(.upBias), count(bias) != out { return false }
        if let bias = s(.diffBias), count(bias) != out { return false }
        if entry.isDoRA, doraAxis(entry, weight) == nil { return false }
        switch kind {
        case .lora:
            guard let down = s(.down), let up = s(.up) else { return s(.upBias) != nil }
            guard down.count >= 2, up.count >= 2, down[0] > 0, up[0] == out else { return false }
            guard up.count == 2 || (up.count == 4 && up[2] == 1 && up[3] == 1) else { return false }
            if let mid = s(.mid) {
                // down [rd, in, 1, 1], mid [r, rd, kh, kw], up [out, r, 1, 1]
                guard mid.count == 4, mid[1] == down[0], up[1] == mid[0], Array(mid[2...]) == kernel, down[1] == inputs,
                      count(down) == down[0] * inputs else { return false }
                return true
            }
            guard up[1] == down[0] else { return false }
            if down.count == 2 { return kernel == [1, 1] && down[1] == inputs }
            return down.count == 4 && down[1] == inputs && Array(down[2...]) == kernel
        case .loha:
            guard let w1a = s(.hadaW1A), let w1b = s(.hadaW1B), let w2a = s(.hadaW2A), let w2b = s(.hadaW2B),
                  w1a.count == 2, w1b.count == 2, w2a.count == 2, w2b.count == 2 else { return false }
            if let t1 = s(.hadaT1), let t2 = s(.hadaT2) {
                // t [r, r, kh, kw], wa [r, out], wb [r, in]
                for (t, wa, wb) in [(t1, w1a, w1b), (t2, w2a, w2b)] {
                    guard t.count == 4, Array(t[2...]) == kernel, t[0] == wa[0], t[1] == wb[0], wa[1] == out, wb[1] == inputs
                    else { return false }
                }
                return true
            }
            // wa [out, r], wb [r, in * kh * kw]
            return w1a[0] == out && w2a[0] == out && w1a[1] == w1b[0] && w2a[1] == w2b[0]
                && w1b[1] == inputs * k && w2b[1] == inputs * k
        case .lokr:
            guard let (a, c) = lokrW1Shape(entry), let (b, dk, k2) = lokrW2Shape(entry) else { return false }
            // A 2-D w2 on a k x k convolution holds d * kh * kw columns.
            let d: Int
            if k2 == k { d = dk } else if k2 == 1, dk % k == 0 { d = dk / k } else { return false }
            return a * b == out && c * d == inputs
        case .diff:
            if let diff = s(.diff) { return count(diff) == count(weight) && diff[0] == out }
            return s(.diffBias) != nil
        }
    }

    /// LoKr's first factor [a, c], full or a @ b.
    static func lokrW1Shape(_ entry: AdapterModuleEntry) -> (Int, Int)? {
        if let w1 = entry.shape(.lokrW1) { return w1.count == 2 ? (w1[0], w1[1]) : nil }
        guard let a = entry.shape(.lokrW1A), let b = entry.shape(.lokrW1B), a.count == 2, b.count == 2, a[1] == b[0] else { return nil }
        return (a[0], b[1])
    }

    /// LoKr's second factor [b, d, K]: full (2-D or 4-D), a @ b ([b, r] @ [r, d * K]; K from the
    /// layer), or Tucker (t [r, r, kh, kw], a [r, b], b [r, d]). K is 0 when only the layer can tell.
    static func lokrW2Shape(_ entry: AdapterModuleEntry) -> (Int, Int, Int)? {
        if let w2 = entry.shape(.lokrW2) {
            if w2.count == 2 { return (w2[0], w2[1], 1) }
            if w2.count == 4 { return (w2[0], w2[1], w2[2] * w2[3]) }
            return nil
        }
        guard let a = entry.shape(.lokrW2A), let b = entry.shape(.lokrW2B), a.count == 2, b.count == 2 else { return nil }
        if let t = entry.shape(.lokrT2) {
            guard t.count == 4, t[0] == a[0], t[1] == b[0] else { return nil }
            return (a[1], b[1], t[2] * t[3])
        }
        guard a[1] == b[0] else { return nil }
        return (a[0], b[1], 1)   // d * K columns: split by the layer (see fits)
    }

    /// The axis a DoRA magnitude normalizes over, from its shape (ComfyUI's rule: first dimension
    /// = out channels -> per output row; PEFT's lora_magnitude_vector is always per output row).
    static func doraAxis(_ entry: AdapterModuleEntry, _ weight: [Int]) -> AdapterMath.NormAxis? {
        let out = weight[0], inputs = weight[1]
        if let m = entry.shape(.magnitude) {
            return m.reduce(1, *) == out && m.filter({ $0 != 1 }).count <= 1 ? .output : nil
        }
        guard let m = entry.shape(.doraScale), m.count == weight.count || m.count == 1 else { return nil }
        let total = m.reduce(1, *)
        if m[0] == out && total == out { return .output }
        if m.count >= 2 && m[0] == 1 && m[1] == inputs && total == inputs { return .input }
        return nil
    }

    /// Reads one matched module's tensors and builds its update for `layer`.
    static func update(_ entry: AdapterModuleEntry, path: String, layer: LoRATargetLayer, file: SafeTensorsFile,
                       rank: Int, alpha: Float, scale: Float) throws -> LoRALayerUpdate {
        let weight = layer.weightShape
        let out = weight[0], inputs = weight[1]
        let k = weight.count == 4 ? weight[2] * weight[3] : 1
        let columns = inputs * k
        func load(_ role: AdapterTensorRole) throws -> Tensor? {
            guard let key = entry.tensors[role]?.key else { return nil }
            return try owned(file, key)
        }
        guard let kind = entry.kind else { throw LoRAError.incompletePair(file: file.url.path, module: path, missing: "one algorithm") }
        var down: Tensor?, up: Tensor?, dense: Tensor?
        var bias: Tensor?
        switch kind {
        case .lora:
            if let d = try load(.down), let u = try load(.up) {
                let r = d.shape[0]
                if let mid = try load(.mid) {
                    down = AdapterMath.foldMid(mid, down: d.reshaped([r, inputs])).reshaped(weight.count == 4 ? [mid.shape[0], inputs] + weight[2...] : [mid.shape[0], inputs])
                    up = u.reshaped([out, mid.shape[0]])
                } else {
                    down = d.reshaped(weight.count == 4 ? [r] + weight.dropFirst() : [r, inputs])
                    up = u.reshaped([out, r])
                }
            }
            if let b = try load(.upBias) {
                bias = b.reshaped([out]).copy()
                AdapterMath.scale(bias!, by: scale)
            }
        case .loha:
            let (w1a, w1b, w2a, w2b) = (try load(.hadaW1A)!, try load(.hadaW1B)!, try load(.hadaW2A)!, try load(.hadaW2B)!)
            let m1: Tensor, m2: Tensor
            if let t1 = try load(.hadaT1), let t2 = try load(.hadaT2) {
                m1 = AdapterMath.rebuildTucker(core: t1, wa: w1a, wb: w1b)
                m2 = AdapterMath.rebuildTucker(core: t2, wa: w2a, wb: w2b)
            } else {
                m1 = AdapterMath.matmul(w1a, w1b, m: out, k: w1a.shape[1], n: columns)
                m2 = AdapterMath.matmul(w2a, w2b, m: out, k: w2a.shape[1], n: columns)
            }
            AdapterMath.multiply(m1, by: m2)
            AdapterMath.scale(m1, by: scale)
            dense = m1.reshaped([out, columns])
        case .lokr:
            let w1: Tensor
            if let full = try load(.lokrW1) { w1 = full } else {
                let (a, b) = (try load(.lokrW1A)!, try load(.lokrW1B)!)
                w1 = AdapterMath.matmul(a, b, m: a.shape[0], k: a.shape[1], n: b.shape[1])
            }
            let (a, c) = (w1.shape[0], w1.shape[1])
            let b = out / a, d = inputs / c
            let w2: Tensor
            if let full = try load(.lokrW2) { w2 = full } else if let t2 = try load(.lokrT2) {
                w2 = AdapterMath.rebuildTucker(core: t2, wa: try load(.lokrW2A)!, wb: try load(.lokrW2B)!)
            } else {
                let (wa, wb) = (try load(.lokrW2A)!, try load(.lokrW2B)!)
                w2 = AdapterMath.matmul(wa, wb, m: wa.shape[0], k: wa.shape[1], n: wb.shape[1])
            }
            let product = AdapterMath.kron(w1, a: a, c: c, w2, b: b, d: d, k: k)
            AdapterMath.scale(product, by: scale)
            dense = product
        case .diff:
            if let diff = try load(.diff) { dense = diff.reshaped([out, columns]) }
        }
        if let b = try load(.diffBias) {
            let diffBias = b.reshaped([out])
            if let existing = bias { for i in 0..<out { existing.data[i] += diffBias.data[i] } } else { bias = diffBias }
        }
        if entry.isDoRA, let axis = doraAxis(entry, weight) {
            // D - W with the whole update at its file scale; applied as s * (D - W).
            var delta = dense
            if delta == nil, let d = down, let u = up {
                let product = AdapterMath.matmul(u, d, m: out, k: u.shape[1], n: columns)
                AdapterMath.scale(product, by: scale)
                delta = product
            }
            let magnitude = try (load(.magnitude) ?? load(.doraScale))!
            dense = AdapterMath.doraDifference(base: layer.baseWeight, delta: delta ?? Tensor(zeros: [out, columns]),
                                               magnitude: magnitude, axis: axis, out: out, inputs: inputs, k: k)
            down = nil
            up = nil
        }
        let isLowRank = down != nil
        return LoRALayerUpdate(component: entry.component, path: path, layer: layer, kind: kind, isDoRA: entry.isDoRA,
                               down: down, up: up, dense: dense, bias: bias, rank: isLowRank ? down!.shape[0] : rank,
                               alpha: alpha, scale: isLowRank ? scale : 1)
    }

    /// A tensor in memory of its own (F32 tensors would otherwise borrow the file mapping).
    static func owned(_ file: SafeTensorsFile, _ key: String) throws -> Tensor {
        let tensor = try file.tensor(key)
        return try file.info(key).dtype == .F32 ? tensor.copy() : tensor
    }
}
