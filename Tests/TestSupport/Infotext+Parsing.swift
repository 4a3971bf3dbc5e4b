// A1111's infotext parser (modules/infotext_utils.py), for tests that read back what Hotswap wrote.
import Foundation
import HotswapPipeline

extension Infotext {
    /// A1111's `unquote`: a value in double quotes is decoded as a JSON string; on failure (or when
    /// not quoted) the text is returned as it is.
    public static func unquote(_ text: String) -> String {
        guard text.count >= 2, text.first == "\"", text.last == "\"" else { return text }
        guard let decoded = try? JSONDecoder().decode(String.self, from: Data(text.utf8)) else { return text }
        return decoded
    }


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
        let p = Self.parse(text)
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
