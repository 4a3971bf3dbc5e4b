import Foundation

/// The LoraConfig fields that decide a PEFT adapter's scale, as diffusers stores them in the
/// safetensors metadata: `lora_adapter_metadata` (one JSON object, keys prefixed `unet.` /
/// `text_encoder.`, what `save_lora_weights(unet_lora_adapter_metadata=...)` writes), or a JSON
/// object per component under `unet_lora_adapter_metadata` / `text_encoder_lora_adapter_metadata`.
public struct PEFTConfig: Sendable, Equatable {
    public var r: Int?
    public var loraAlpha: Float?
    public var rankPattern: [String: Int] = [:]
    public var alphaPattern: [String: Float] = [:]
    public var useRSLoRA = false

    init?(metadata: [String: String], component: LoRAComponent) {
        var fields: [String: Any] = [:]
        if let packed = metadata["lora_adapter_metadata"], let object = PEFTConfig.json(packed) {
            let prefix = component.rawValue + "."
            for (key, value) in object where key.hasPrefix(prefix) { fields[String(key.dropFirst(prefix.count))] = value }
        }
        if fields.isEmpty, let own = metadata["\(component.rawValue)_lora_adapter_metadata"], let object = PEFTConfig.json(own) {
            fields = object
        }
        guard !fields.isEmpty else { return nil }
        r = (fields["r"] as? NSNumber)?.intValue
        loraAlpha = (fields["lora_alpha"] as? NSNumber)?.floatValue
        for (key, value) in fields["rank_pattern"] as? [String: Any] ?? [:] {
            if let n = value as? NSNumber { rankPattern[key] = n.intValue }
        }
        for (key, value) in fields["alpha_pattern"] as? [String: Any] ?? [:] {
            if let n = value as? NSNumber { alphaPattern[key] = n.floatValue }
        }
        useRSLoRA = (fields["use_rslora"] as? NSNumber)?.boolValue ?? false
        if r == nil && loraAlpha == nil && rankPattern.isEmpty && alphaPattern.isEmpty { return nil }
    }

    static func json(_ text: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }

    /// PEFT matches pattern keys with `re.match(rf"(.*\.)?({key})$", module)`; keys are module
    /// names in practice, so a whole-name or dotted-suffix match.
    static func match<V>(_ pattern: [String: V], _ module: String) -> V? {
        for key in pattern.keys.sorted(by: { $0.count > $1.count }) where module == key || module.hasSuffix("." + key) {
            return pattern[key]
        }
        return nil
    }

    func rank(for module: String) -> Int? { PEFTConfig.match(rankPattern, module) ?? r }
    func alpha(for module: String) -> Float? { PEFTConfig.match(alphaPattern, module) ?? loraAlpha }
}
