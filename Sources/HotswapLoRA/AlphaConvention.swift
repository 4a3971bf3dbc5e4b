/// How a kohya file's per-module `.alpha` values become scales when they are not all equal.
public enum AlphaConvention: String, Sendable, CaseIterable {
    /// What diffusers 0.42 (with transformers 5) computes, so images match it: within each
    /// component, when the alphas differ, the most common one (ties: the first in key order) is
    /// PEFT's `lora_alpha` and only modules its `alpha_pattern` reaches keep their own: UNet layers
    /// other than the attention projections (`to_q`, `to_k`, `to_v`, `to_out.0`, whose converted
    /// names never match); no text-encoder layer (the pattern keeps `text_model.`, which transformers
    /// 5 module names lack). A module without `.alpha` takes that most common value too.
    /// With one alpha per component (the usual kohya file) this equals `.kohya`.
    case diffusers
    /// kohya-ss / A1111 / ComfyUI: every module its own alpha / rank (alpha = rank when absent).
    case kohya

    /// Effective alpha per module of a kohya-layout file (keyed by `AdapterModuleEntry.id`), or
    /// nil for a module whose own alpha (or rank) stands.
    static func diffusersAlphas(_ plan: [(entry: AdapterModuleEntry, path: String)]) -> [String: Float] {
        var result: [String: Float] = [:]
        for component in [LoRAComponent.unet, .textEncoder, .textEncoder2] {
            let members = plan.filter { $0.entry.component == component && $0.entry.underscored && $0.entry.kind == .lora }
                .sorted { ($0.entry.downKey ?? "") < ($1.entry.downKey ?? "") }
            let alphas = members.compactMap(\.entry.alpha)
            guard let first = alphas.first else { continue }
            var counts: [Float: Int] = [:]
            for a in alphas { counts[a, default: 0] += 1 }
            let best = counts.values.max()!
            let mostCommon = alphas.first { counts[$0] == best } ?? first
            let uniform = counts.count == 1
            for (entry, path) in members {
                if let own = entry.alpha, uniform {
                    result[entry.id] = own
                } else if let own = entry.alpha, component == .unet, !isAttentionProjection(path) {
                    result[entry.id] = own
                } else {
                    result[entry.id] = mostCommon
                }
            }
        }
        return result
    }

    static func isAttentionProjection(_ path: String) -> Bool {
        [".to_q", ".to_k", ".to_v", ".to_out.0"].contains { path.hasSuffix($0) }
    }
}
