import Foundation

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
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// A1111's `unquote`: a value in double quotes is decoded as a JSON string; on failure (or when
    /// not quoted) the text is returned as it is.
    public static func unquote(_ text: String) -> String {
        guard text.count >= 2, text.first == "\"", text.last == "\"" else { return text }
        guard let decoded = try? JSONDecoder().decode(String.self, from: Data(text.utf8)) else { return text }
        return decoded
    }

    // MARK: Parsing

    // A1111's re_param: `\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)`
    private static let paramRegex = try! NSRegularExpression(
        pattern: #"\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)"#)
    private static let sizeRegex = try! NSRegularExpression(pattern: #"^(\d+)x(\d+)$"#)

    private static func findParameters(_ line: String) -> [(String, String)] {
        let ns = line as NSString
        return paramRegex.matches(in: line, range: NSRange(location: 0, length: ns.length)).map {
            (ns.substring(with: $0.range(at: 1)), ns.substring(with: $0.range(at: 2)))
        }
    }

    /// Parses infotext as A1111's `parse_generation_parameters` does: "Prompt" and
    /// "Negative prompt" (multi-line prompts joined with "\n"), then every "Key: value" of the last
    /// line (only if it has at least 3 of them; otherwise it belongs to the prompt), quoted values
    /// unquoted, and sizes split into "Size-1"/"Size-2" (as A1111 does for any "NxM" value).
    /// A1111's UI defaults for absent keys (e.g. "Clip skip": "1") are not filled in.
    public static func parse(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        var lines = text.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: "\n")
        var lastLine = lines.removeLast()
        if findParameters(lastLine).count < 3 {
            lines.append(lastLine)
            lastLine = ""
        }
        var prompt = "", negative = "", doneWithPrompt = false
        for raw in lines {
            var line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.hasPrefix("Negative prompt:") {
                doneWithPrompt = true
                line = String(line.dropFirst(16)).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            if doneWithPrompt {
                negative += (negative.isEmpty ? "" : "\n") + line
            } else {
                prompt += (prompt.isEmpty ? "" : "\n") + line
            }
        }
        result["Prompt"] = prompt
        result["Negative prompt"] = negative
        for (key, rawValue) in findParameters(lastLine) {
            var value = rawValue
            if value.count >= 2, value.first == "\"", value.last == "\"" { value = unquote(value) }
            let ns = value as NSString
            if let m = sizeRegex.firstMatch(in: value, range: NSRange(location: 0, length: ns.length)) {
                result["\(key)-1"] = ns.substring(with: m.range(at: 1))
                result["\(key)-2"] = ns.substring(with: m.range(at: 2))
            } else {
                result[key] = value
            }
        }
        return result
    }

    /// Rebuilds an Infotext from text written in this format (by Hotswap or A1111). Returns nil
    /// when a required field (Steps, Sampler, CFG scale, Seed, Size) is missing or not a number.
    public init?(parsing text: String) {
        let p = Infotext.parse(text)
        guard let steps = p["Steps"].flatMap({ Int($0) }), let sampler = p["Sampler"],
              let cfg = p["CFG scale"].flatMap({ Double($0) }), let seed = p["Seed"].flatMap({ UInt64($0) }),
              let width = p["Size-1"].flatMap({ Int($0) }), let height = p["Size-2"].flatMap({ Int($0) }) else { return nil }
        var loras: [(name: String, hash: String)] = []
        if let hashes = p["Lora hashes"] {
            for pair in hashes.components(separatedBy: ",") {
                let parts = pair.split(separator: ":", maxSplits: 1)
                guard parts.count == 2 else { continue }
                loras.append((parts[0].trimmingCharacters(in: .whitespaces), parts[1].trimmingCharacters(in: .whitespaces)))
            }
        }
        self.init(prompt: p["Prompt"] ?? "", negativePrompt: p["Negative prompt"] ?? "", steps: steps, sampler: sampler,
                  scheduleType: p["Schedule type"], cfgScale: cfg, seed: seed, width: width, height: height,
                  modelName: p["Model"], modelHash: p["Model hash"], clipSkip: p["Clip skip"].flatMap { Int($0) },
                  loraHashes: loras, version: p["Version"])
    }
}
