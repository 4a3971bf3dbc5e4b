import Foundation
import HotswapModels

/// Generation parameters in AUTOMATIC1111's "infotext" format — the `parameters` PNG text chunk
/// that A1111, Forge, ComfyUI importers, Civitai and most image browsers read:
///
///     a cat in a hat
///     Negative prompt: blurry
///     Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, Lora hashes: "pixel: 0123456789ab", Version: hotswap 0.1.0
///
/// Mirrors A1111's `create_infotext` (modules/processing.py): the fields appear in its order
/// (Steps, Sampler, Schedule type, CFG scale, Seed, Size, Model hash, Model, Clip skip, then extra
/// parameters such as Lora hashes, then Version); absent fields are left out; a value containing
/// ',', ':' or a newline is written as a JSON string (`infotext_utils.quote`); the negative prompt
/// line is left out when empty; "Clip skip" only appears when greater than 1. CFG scale is printed
/// the way Python prints the number A1111 gets from its UI: `7` for whole numbers, else the
/// shortest round-trip form (`7.5`). "Lora hashes" is A1111's built-in Lora extension format:
/// `name: shorthash` pairs joined by ", " with ':' and ',' removed from the names.
public struct Infotext: Sendable, Equatable {
    /// What this program writes in the "Version" field by default.
    public static let hotswapVersion = "hotswap 0.1.0"

    public var prompt: String
    public var negativePrompt: String
    public var steps: Int
    /// A1111 sampler label, e.g. "Euler a", "DPM++ 2M", "DDIM".
    public var sampler: String
    /// A1111 schedule type label, e.g. "Karras"; nil leaves the field out.
    public var scheduleType: String?
    public var cfgScale: Double
    public var seed: UInt64
    public var width: Int
    public var height: Int
    /// Checkpoint name without extension (A1111's `name_for_extra`); nil leaves the field out.
    public var modelName: String?
    /// A1111 short hash: the first 10 hex digits of the checkpoint's SHA-256.
    public var modelHash: String?
    /// CLIP layers skipped; written only when > 1 ("Clip skip: 2").
    public var clipSkip: Int?
    /// LoRAs used: (name as written in the prompt, short hash = first 12 hex digits of SHA-256).
    public var loraHashes: [(name: String, hash: String)]
    /// Extra "Key: value" parameters written after Clip skip and before Lora hashes, in order
    /// (e.g. ("Denoising strength", "0.75")). Values are quoted as needed.
    public var extraParameters: [(key: String, value: String)]
    /// "Version" field; nil leaves it out.
    public var version: String?

    public init(prompt: String, negativePrompt: String = "", steps: Int, sampler: String, scheduleType: String? = nil,
                cfgScale: Double, seed: UInt64, width: Int, height: Int, modelName: String? = nil,
                modelHash: String? = nil, clipSkip: Int? = nil, loraHashes: [(name: String, hash: String)] = [],
                extraParameters: [(key: String, value: String)] = [], version: String? = Infotext.hotswapVersion) {
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.steps = steps
        self.sampler = sampler
        self.scheduleType = scheduleType
        self.cfgScale = cfgScale
        self.seed = seed
        self.width = width
        self.height = height
        self.modelName = modelName
        self.modelHash = modelHash
        self.clipSkip = clipSkip
        self.loraHashes = loraHashes
        self.extraParameters = extraParameters
        self.version = version
    }

    public static func == (a: Infotext, b: Infotext) -> Bool {
        a.prompt == b.prompt && a.negativePrompt == b.negativePrompt && a.steps == b.steps && a.sampler == b.sampler
            && a.scheduleType == b.scheduleType && a.cfgScale == b.cfgScale && a.seed == b.seed && a.width == b.width
            && a.height == b.height && a.modelName == b.modelName && a.modelHash == b.modelHash
            && (a.clipSkip ?? 1 <= 1 ? 1 : a.clipSkip!) == (b.clipSkip ?? 1 <= 1 ? 1 : b.clipSkip!)
            && a.loraHashes.map { "\($0.name)\u{0}\($0.hash)" } == b.loraHashes.map { "\($0.name)\u{0}\($0.hash)" }
            && a.extraParameters.map { "\($0.key)\u{0}\($0.value)" } == b.extraParameters.map { "\($0.key)\u{0}\($0.value)" }
            && a.version == b.version
    }

    /// The parameters line's fields, in A1111's order, unquoted.
    public var parameters: [(key: String, value: String)] {
        var p: [(key: String, value: String)] = [
            ("Steps", String(steps)),
            ("Sampler", sampler),
        ]
        if let scheduleType { p.append(("Schedule type", scheduleType)) }
        p.append(("CFG scale", Infotext.formatNumber(cfgScale)))
        p.append(("Seed", String(seed)))
        p.append(("Size", "\(width)x\(height)"))
        if let modelHash { p.append(("Model hash", modelHash)) }
        if let modelName { p.append(("Model", modelName)) }
        if let clipSkip, clipSkip > 1 { p.append(("Clip skip", String(clipSkip))) }
        p.append(contentsOf: extraParameters)
        if !loraHashes.isEmpty {
            let pairs = loraHashes.map { lora -> String in
                let alias = lora.name.replacingOccurrences(of: ":", with: "").replacingOccurrences(of: ",", with: "")
                return "\(alias): \(lora.hash)"
            }
            p.append(("Lora hashes", pairs.joined(separator: ", ")))
        }
        if let version { p.append(("Version", version)) }
        return p
    }

    /// The full infotext (A1111's `create_infotext` output).
    public var text: String {
        // A1111 writes a bare key when key == value (used by some extensions); keep that rule.
        let line = parameters.map { $0.key == $0.value ? $0.key : "\($0.key): \(Infotext.quote($0.value))" }
            .joined(separator: ", ")
        let negative = negativePrompt.isEmpty ? "" : "\nNegative prompt: \(negativePrompt)"
        return "\(prompt)\(negative)\n\(line)".trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: Formatting helpers

    /// `7` for whole numbers, otherwise the shortest representation that reads back exactly (like
    /// Python's repr of a float: `7.5`, `0.1`).
    public static func formatNumber(_ x: Double) -> String {
        if x.isFinite, x == x.rounded(), abs(x) < 1e15 { return String(Int64(x)) }
        return "\(x)"
    }

    /// A1111's `infotext_utils.quote`: values containing ',', ':' or a newline become a JSON string
    /// (Python `json.dumps(ensure_ascii=False)`), others are written as they are.
    public static func quote(_ value: String) -> String {
        guard value.contains(where: { $0 == "," || $0 == ":" || $0 == "\n" }) else { return value }
        return JSONWriter.quote(value)
    }
}
