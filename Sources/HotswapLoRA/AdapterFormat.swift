/// The key layouts of LoRA files in the wild.
public enum AdapterFormat: String, Sendable, Codable {
    /// diffusers/PEFT: `unet.<module>.lora_A.weight` / `lora_B.weight`, `text_encoder.<module>...`,
    /// rank and alpha in the `lora_adapter_metadata` JSON (or alpha = rank).
    case peft
    /// kohya-ss / A1111: `lora_unet_<module_with_underscores>.lora_down.weight` / `.lora_up.weight` /
    /// `.alpha`, `lora_te_...` for the text encoder.
    case kohya
    /// kohya with k x k convolution layers (LyCORIS "LoCon").
    case kohyaLoCon = "kohya-locon"
    /// Older diffusers attention processors: `...attn1.processor.to_q_lora.down.weight`.
    case diffusersAttnProcessor = "diffusers-attn-processor"
    /// diffusers' LoRACompatible layers: `...<module>.lora.down.weight` / `lora_linear_layer.up.weight`.
    case diffusersLoRALayer = "diffusers-lora-layer"
}

/// The model a key belongs to.
public enum LoRAComponent: String, Sendable, Codable, Comparable {
    case unet
    case textEncoder = "text_encoder"
    /// SDXL's second text encoder (`lora_te2_`, `text_encoder_2.`): matches nothing in SD 1.x/2.x.
    case textEncoder2 = "text_encoder_2"

    public static func < (a: LoRAComponent, b: LoRAComponent) -> Bool { a.rawValue < b.rawValue }
}
