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
            guard rank >= 1 else {
                throw LoRAError.invalidValues(file: name, key: entry.downKey ?? entry.name, reason: "has rank \(rank); the rank must be at least 1")
            }
            guard scale.isFinite else {
                throw LoRAError.invalidValues(file: name, key: alphaName, reason: "gives alpha / rank = \(scale), not a finite number")
            }
            var largest: [Float] = []
            for key in [entry.downKey, entry.upKey].compactMap({ $0 }) {
                let tensor: Tensor
                do { tensor = try safetensors.tensor(key) } catch {
                    throw LoRAError.unreadable(file: name, reason: "\(key): \(error)")
                }
                var maximum: Float = 0
                for i in 0..<tensor.count {
                    let value = tensor.data[i]
                    guard value.isFinite else {
                        throw LoRAError.invalidValues(file: name, key: key, reason: "holds \(value) at index \(i); every value must be finite")
                    }
                    maximum = max(maximum, abs(value))
                }
                largest.append(maximum)
            }
            let bound = largest.reduce(Float(max(rank, 1)) * abs(scale) * AdapterSpec.maxScale, *)
            guard bound.isFinite, bound <= Self.maxUpdateMagnitude else {
                throw LoRAError.invalidValues(file: name, key: alphaName,
                                              reason: "makes updates up to \(bound) (alpha / rank = \(scale)); the fused weights would overflow Float32")
            }
        }
    }
}
