import Foundation
import HotswapCore
import HotswapModels

extension AdapterFile {
    /// Bound on |scale * up * down| for any weight: far from Float32's 3.4e38, so base + several
    /// adapters still sum to finite numbers.
    static let maxUpdateMagnitude: Float = 1e30

    /// Checks the values, not only the structure, of every module: each down/up tensor finite,
    /// alpha finite and >= 0, rank >= 1, alpha/rank finite, and the largest possible update
    /// (rank x max|up| x max|down| x scale x the largest request scale) far from overflowing. One
    /// pass over the adapter's tensors (adapters are small). Throws `LoRAError.invalidValues`
    /// naming the tensor, or `.empty` / `.unsupportedKeys` for a file that is no usable adapter.
    public func checkValues() throws {
        let name = url.path
        if !unsupportedKeys.isEmpty { throw LoRAError.unsupportedKeys(file: name, keys: unsupportedKeys) }
        guard !modules.isEmpty else { throw LoRAError.empty(file: name) }
        for entry in modules {
            let (alpha, rank, scale) = alphaAndRank(entry, modulePath: entry.name)
            let alphaName = entry.alphaKey ?? "\(entry.component.rawValue) lora_alpha of \(entry.name)"
            guard alpha.isFinite, alpha >= 0 else {
                throw LoRAError.invalidValues(file: name, key: alphaName, reason: "is \(alpha); alpha must be a finite number >= 0")
            }
            if entry.rank != nil, rank < 1 {
                let key = entry.downKey ?? entry.tensors[.hadaW1B]?.key ?? entry.tensors[.lokrW2B]?.key ?? entry.name
                throw LoRAError.invalidValues(file: name, key: key, reason: "has rank \(rank); the rank must be at least 1")
            }
            guard scale.isFinite else {
                throw LoRAError.invalidValues(file: name, key: alphaName, reason: "gives alpha / rank = \(scale), not a finite number")
            }
            // Every value finite; the largest |value| of each tensor for the overflow bound.
            var largest: [AdapterTensorRole: Float] = [:]
            for (role, ref) in entry.tensors where role != .alpha {
                let tensor: Tensor
                do { tensor = try safetensors.tensor(ref.key) } catch {
                    throw LoRAError.unreadable(file: name, reason: "\(ref.key): \(error)")
                }
                var maximum: Float = 0
                for i in 0..<tensor.count {
                    let value = tensor.data[i]
                    guard value.isFinite else {
                        throw LoRAError.invalidValues(file: name, key: ref.key, reason: "holds \(value) at index \(i); every value must be finite")
                    }
                    maximum = max(maximum, abs(value))
                }
                largest[role] = maximum
            }
            // The largest possible |update| per weight: each factor's max times the inner sizes summed over.
            func inner(_ role: AdapterTensorRole) -> Float { Float(entry.shape(role)?.first ?? 1) }
            func big(_ roles: [AdapterTensorRole]) -> Float { roles.reduce(1) { $0 * (largest[$1] ?? 1) } }
            var bound: Float
            switch entry.kind {
            case .loha:
                bound = inner(.hadaW1B) * inner(.hadaW2B) * big([.hadaW1A, .hadaW1B, .hadaW2A, .hadaW2B, .hadaT1, .hadaT2])
                if entry.tensors[.hadaT1] != nil { bound *= inner(.hadaW1B) * inner(.hadaW2B) }
            case .lokr:
                bound = inner(.lokrW1B) * inner(.lokrW2B) * big([.lokrW1, .lokrW1A, .lokrW1B, .lokrW2, .lokrW2A, .lokrW2B, .lokrT2])
                if entry.tensors[.lokrT2] != nil { bound *= inner(.lokrW2B) }
            case .diff:
                bound = max(largest[.diff] ?? 0, largest[.diffBias] ?? 0)
            case .lora, nil:
                bound = Float(max(rank, 1)) * big([.down, .up, .mid]) + (largest[.upBias] ?? 0)
                if entry.tensors[.mid] != nil { bound *= inner(.mid) }
            }
            bound *= abs(scale) * AdapterSpec.maxScale
            // DoRA: |m * v / ||v||| <= |m| per weight.
            bound = max(bound, max(largest[.doraScale] ?? 0, largest[.magnitude] ?? 0) * AdapterSpec.maxScale)
            guard bound.isFinite, bound <= Self.maxUpdateMagnitude else {
                throw LoRAError.invalidValues(file: name, key: alphaName,
                                              reason: "makes updates up to \(bound) (alpha / rank = \(scale)); the fused weights would overflow Float32")
            }
        }
    }
}
