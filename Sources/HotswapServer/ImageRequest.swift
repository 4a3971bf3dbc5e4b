// POST /v1/images: the JSON body, parsed field by field so every error names its field.
import Foundation
import HotswapPipeline

/// A JSON value that keeps booleans, integers and other numbers apart (JSONSerialization on Linux
/// would read `true` as 1).
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case unsigned(UInt64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null; return }
        if let value = try? container.decode(Bool.self) { self = .bool(value); return }
        if let value = try? container.decode(Int64.self) { self = .integer(value); return }
        if let value = try? container.decode(UInt64.self) { self = .unsigned(value); return }
        if let value = try? container.decode(Double.self) { self = .number(value); return }
        if let value = try? container.decode(String.self) { self = .string(value); return }
        if let value = try? container.decode([JSONValue].self) { self = .array(value); return }
        if let value = try? container.decode([String: JSONValue].self) { self = .object(value); return }
        throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a JSON value")
    }

    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .integer, .unsigned, .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    static func parse(_ data: Data) throws -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw APIError.invalidJSON("the body is not valid JSON")
        }
    }
}

/// The limits `hotswap serve` enforces on top of the engine's own checks.
public struct ImageLimits: Sendable {
    public var maxSteps: Int
    public var maxPixels: Int

    public init(maxSteps: Int = 150, maxPixels: Int = 1024 * 1024) {
        self.maxSteps = maxSteps
        self.maxPixels = maxPixels
    }
}

/// The body of POST /v1/images, checked but not yet resolved against the model.
struct ImageRequestBody: Equatable {
    var prompt: String
    var negativePrompt: String?
    var adapters: [AdapterRef] = []
    var steps: Int?
    var guidance: Float?
    var seed: UInt64?
    var width: Int?
    var height: Int?
    var scheduler: SchedulerName?
    var clipSkip: Int?

    static let knownFields: Set<String> = ["prompt", "negative_prompt", "adapter", "adapters", "steps", "guidance",
                                           "seed", "width", "height", "scheduler", "clip_skip"]

    /// Parses and checks the body; `queryAdapter` is `?adapter=NAME`.
    static func parse(_ data: Data, queryAdapter: String?, limits: ImageLimits) throws -> ImageRequestBody {
        guard case .object(let fields) = try JSONValue.parse(data) else {
            throw APIError.invalidJSON("the body must be a JSON object")
        }
        if let unknown = fields.keys.sorted().first(where: { !knownFields.contains($0) }) {
            throw APIError.invalidField(unknown, "unknown field '\(unknown)'")
        }
        guard let promptValue = fields["prompt"], promptValue != .null else {
            throw APIError.invalidField("prompt", "prompt is required")
        }
        var body = ImageRequestBody(prompt: try string(promptValue, field: "prompt"))
        body.negativePrompt = try fields["negative_prompt"].flatMap { try optionalString($0, field: "negative_prompt") }

        // Adapters: "adapter": NAME, or "adapters": [{"name", "scale"}], or ?adapter=NAME.
        if let single = fields["adapter"], single != .null {
            if let list = fields["adapters"], list != .null {
                throw APIError.invalidField("adapters", "give either adapter or adapters, not both")
            }
            let name = try string(single, field: "adapter")
            try checkName(name, field: "adapter")
            body.adapters = [AdapterRef(name: name)]
        } else if let list = fields["adapters"], list != .null {
            guard case .array(let items) = list else {
                throw APIError.invalidField("adapters", "adapters must be an array of {\"name\", \"scale\"}, got \(list.typeName)")
            }
            guard items.count <= 8 else { throw APIError.invalidField("adapters", "at most 8 adapters per request") }
            for (i, item) in items.enumerated() {
                let path = "adapters[\(i)]"
                guard case .object(let entry) = item else {
                    throw APIError.invalidField(path, "\(path) must be an object {\"name\", \"scale\"}, got \(item.typeName)")
                }
                if let unknown = entry.keys.sorted().first(where: { $0 != "name" && $0 != "scale" }) {
                    throw APIError.invalidField("\(path).\(unknown)", "unknown field '\(unknown)' in \(path)")
                }
                guard let nameValue = entry["name"] else { throw APIError.invalidField("\(path).name", "\(path).name is required") }
                let name = try string(nameValue, field: "\(path).name")
                try checkName(name, field: "\(path).name")
                var scale: Float = 1
                if let scaleValue = entry["scale"], scaleValue != .null {
                    let value = try number(scaleValue, field: "\(path).scale")
                    guard value.isFinite, abs(value) <= 16 else {
                        throw APIError.invalidField("\(path).scale", "\(path).scale must be a number in -16...16, got \(value)")
                    }
                    scale = Float(value)
                }
                if body.adapters.contains(where: { $0.name == name }) {
                    throw APIError.invalidField("\(path).name", "adapter '\(name)' is listed twice")
                }
                body.adapters.append(AdapterRef(name: name, scale: scale))
            }
        }
        if let queryAdapter {
            try checkName(queryAdapter, field: "adapter")
            if body.adapters.isEmpty {
                body.adapters = [AdapterRef(name: queryAdapter)]
            } else if !body.adapters.contains(where: { $0.name == queryAdapter }) {
                throw APIError.invalidField("adapter", "the query parameter adapter=\(queryAdapter) is not among the body's adapters")
            }
        }

        if let value = fields["steps"], value != .null {
            let steps = try integer(value, field: "steps")
            guard steps >= 1, steps <= Int64(limits.maxSteps) else {
                throw APIError.invalidField("steps", "steps must be in 1...\(limits.maxSteps), got \(steps)")
            }
            body.steps = Int(steps)
        }
        if let value = fields["guidance"], value != .null {
            let guidance = try number(value, field: "guidance")
            guard guidance.isFinite, guidance >= 0, guidance <= 100 else {
                throw APIError.invalidField("guidance", "guidance must be a number in 0...100, got \(guidance)")
            }
            body.guidance = Float(guidance)
        }
        if let value = fields["seed"], value != .null {
            switch value {
            case .integer(let seed) where seed >= 0: body.seed = UInt64(seed)
            case .unsigned(let seed): body.seed = seed
            default:
                throw APIError.invalidField("seed", "seed must be an integer in 0...\(UInt64.max), got \(describe(value))")
            }
        }
        for field in ["width", "height"] {
            guard let value = fields[field], value != .null else { continue }
            let size = try integer(value, field: field)
            guard size > 0, size % 8 == 0, size <= 8192 else {
                throw APIError.invalidField(field, "\(field) must be a positive multiple of 8 (at most 8192), got \(size)")
            }
            if field == "width" { body.width = Int(size) } else { body.height = Int(size) }
        }
        if let value = fields["scheduler"], value != .null {
            let name = try string(value, field: "scheduler")
            guard let scheduler = SchedulerName(rawValue: name) else {
                throw APIError.invalidField("scheduler", "unknown scheduler '\(name.prefix(64))'; choose one of \(SchedulerName.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            body.scheduler = scheduler
        }
        if let value = fields["clip_skip"], value != .null {
            let clipSkip = try integer(value, field: "clip_skip")
            guard clipSkip >= 0, clipSkip < 64 else {
                throw APIError.invalidField("clip_skip", "clip_skip must be a small non-negative integer, got \(clipSkip)")
            }
            body.clipSkip = Int(clipSkip)
        }
        return body
    }

    /// The engine request (a random seed when none was given).
    func generationRequest() -> GenerationRequest {
        var request = GenerationRequest(prompt: prompt, negativePrompt: negativePrompt,
                                        seed: seed ?? TorchGenerator.randomSeed(), width: width, height: height,
                                        scheduler: scheduler, clipSkip: clipSkip)
        if let steps { request.steps = steps }
        if let guidance { request.guidance = guidance }
        return request
    }

    // MARK: Field readers

    static func checkName(_ name: String, field: String) throws {
        guard AdapterName.isValid(name) else { throw APIError.invalidAdapterName(name, field: field) }
    }

    static func string(_ value: JSONValue, field: String) throws -> String {
        guard case .string(let text) = value else {
            throw APIError.invalidField(field, "\(field) must be a string, got \(value.typeName)")
        }
        guard text.utf8.count <= 16 * 1024 else {
            throw APIError.invalidField(field, "\(field) is longer than 16 KiB")
        }
        return text
    }

    static func optionalString(_ value: JSONValue, field: String) throws -> String? {
        value == .null ? nil : try string(value, field: field)
    }

    static func integer(_ value: JSONValue, field: String) throws -> Int64 {
        switch value {
        case .integer(let int): return int
        case .unsigned: throw APIError.invalidField(field, "\(field) is out of range")
        case .number(let double) where double.rounded() == double && abs(double) < 1e15: return Int64(double)
        default: throw APIError.invalidField(field, "\(field) must be an integer, got \(describe(value))")
        }
    }

    static func number(_ value: JSONValue, field: String) throws -> Double {
        switch value {
        case .integer(let int): return Double(int)
        case .unsigned(let uint): return Double(uint)
        case .number(let double): return double
        default: throw APIError.invalidField(field, "\(field) must be a number, got \(value.typeName)")
        }
    }

    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .integer(let int): return String(int)
        case .unsigned(let uint): return String(uint)
        case .number(let double): return String(double)
        default: return value.typeName
        }
    }
}

/// Adapter names: `[A-Za-z0-9._-]{1,64}`, and not "." or ".." (or any all-dots name), so a name
/// can never leave the adapters directory: the file is always `<dir>/<name>.safetensors`.
public enum AdapterName {
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count) else { return false }
        guard bytes.allSatisfy({ byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }) else { return false }
        return !bytes.allSatisfy { $0 == UInt8(ascii: ".") }
    }

    /// The file for `name` inside `directory`, or nil when the name is invalid or the path would
    /// resolve elsewhere.
    public static func fileURL(for name: String, in directory: URL) -> URL? {
        guard isValid(name) else { return nil }
        let dir = directory.standardizedFileURL
        let url = dir.appendingPathComponent(name + ".safetensors").standardizedFileURL
        guard url.deletingLastPathComponent().path == dir.path else { return nil }
        return url
    }
}
