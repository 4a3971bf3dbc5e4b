// POST /v1/images: the JSON body, read field by field so every error names its field. Only the
// JSON shape is checked here (types, names, unknown fields); every value check is the engine's one
// validator (`GenerationRequest.validate` / `Renderer.prepare`), shared with the CLI.
import Foundation
import HotswapLoRA
import HotswapModels
import HotswapPipeline

enum ImageRequestBody {
    static let knownFields: Set<String> = ["prompt", "negative_prompt", "adapter", "adapters", "steps", "guidance",
                                           "seed", "width", "height", "scheduler", "clip_skip"]

    /// Parses the body into an engine request (a random seed when none was given); `queryAdapter`
    /// is `?adapter=NAME`.
    static func parse(_ data: Data, queryAdapter: String?) throws -> GenerationRequest {
        let fields = try object(data)
        if let unknown = fields.keys.sorted().first(where: { !knownFields.contains($0) }) {
            throw APIError.invalidField(unknown, "unknown field '\(unknown.prefix(64))'")
        }
        guard let promptValue = fields["prompt"], promptValue != .null else {
            throw APIError.invalidField("prompt", "prompt is required")
        }
        var request = GenerationRequest(prompt: try string(promptValue, field: "prompt"))
        request.negativePrompt = try fields["negative_prompt"].flatMap { try optionalString($0, field: "negative_prompt") }
        request.adapters = try adapters(fields, queryAdapter: queryAdapter)
        if let value = present(fields["steps"]) { request.steps = try integer(value, field: "steps") }
        if let value = present(fields["guidance"]) { request.guidance = Float(try number(value, field: "guidance")) }
        if let value = present(fields["seed"]) { request.seed = try seed(value, field: "seed") }
        if let value = present(fields["width"]) { request.width = try integer(value, field: "width") }
        if let value = present(fields["height"]) { request.height = try integer(value, field: "height") }
        if let value = present(fields["scheduler"]) { request.scheduler = try scheduler(value, field: "scheduler") }
        if let value = present(fields["clip_skip"]) { request.clipSkip = try integer(value, field: "clip_skip") }
        return request
    }

    /// "adapter": NAME, or "adapters": [{"name", "scale"}], or ?adapter=NAME.
    static func adapters(_ fields: [String: JSONValue], queryAdapter: String?) throws -> [AdapterSpec] {
        var adapters: [AdapterSpec] = []
        if let single = present(fields["adapter"]) {
            if present(fields["adapters"]) != nil {
                throw APIError.invalidField("adapters", "give either adapter or adapters, not both")
            }
            let name = try string(single, field: "adapter")
            try checkName(name, field: "adapter")
            adapters = [AdapterSpec(name: name)]
        } else if let list = present(fields["adapters"]) {
            guard case .array(let items) = list else {
                throw APIError.invalidField("adapters", "adapters must be an array of {\"name\", \"scale\"}, got \(list.kindName)")
            }
            for (i, item) in items.enumerated() {
                let path = "adapters[\(i)]"
                guard let entry = item.objectMembers else {
                    throw APIError.invalidField(path, "\(path) must be an object {\"name\", \"scale\"}, got \(item.kindName)")
                }
                if let unknown = entry.map(\.key).sorted().first(where: { $0 != "name" && $0 != "scale" }) {
                    throw APIError.invalidField("\(path).\(unknown.prefix(64))", "unknown field '\(unknown.prefix(64))' in \(path)")
                }
                guard let nameValue = entry.first(where: { $0.key == "name" })?.value else {
                    throw APIError.invalidField("\(path).name", "\(path).name is required")
                }
                let name = try string(nameValue, field: "\(path).name")
                try checkName(name, field: "\(path).name")
                var scale: Float = 1
                if let scaleValue = present(entry.first(where: { $0.key == "scale" })?.value) {
                    scale = Float(try number(scaleValue, field: "\(path).scale"))
                }
                adapters.append(AdapterSpec(name: name, scale: scale))
            }
        }
        return try merge(queryAdapter: queryAdapter, into: adapters)
    }

    /// `?adapter=NAME`, which a load balancer in front hashes on (deploy/nginx): used when the body
    /// names no adapter; otherwise it must be among the body's adapters. Every image route takes it.
    static func merge(queryAdapter: String?, into adapters: [AdapterSpec]) throws -> [AdapterSpec] {
        guard let queryAdapter else { return adapters }
        try checkName(queryAdapter, field: "adapter")
        if adapters.isEmpty { return [AdapterSpec(name: queryAdapter)] }
        guard adapters.contains(where: { $0.name == queryAdapter }) else {
            throw APIError.invalidField("adapter", "the query parameter adapter=\(queryAdapter) is not among the request's adapters")
        }
        return adapters
    }

    // MARK: Field readers

    /// A field that is there and not null.
    static func present(_ value: JSONValue?) -> JSONValue? {
        guard let value, value != .null else { return nil }
        return value
    }

    /// One of our scheduler names ("euler-a", "dpmpp-2m-karras", ...).
    static func scheduler(_ value: JSONValue, field: String) throws -> SchedulerName {
        let name = try string(value, field: field)
        guard let scheduler = SchedulerName(rawValue: name) else {
            throw APIError.invalidField(field, "unknown scheduler '\(name.prefix(64))'; choose one of \(SchedulerName.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return scheduler
    }

    /// A seed: an integer in 0...UInt64.max.
    static func seed(_ value: JSONValue, field: String) throws -> UInt64 {
        guard let seed = value.uint64 else {
            throw APIError.invalidField(field, "\(field) must be an integer in 0...\(UInt64.max), got \(value.brief)")
        }
        return seed
    }

    static func checkName(_ name: String, field: String) throws {
        guard AdapterName.isValid(name) else { throw APIError.invalidAdapterName(name, field: field) }
    }

    static func string(_ value: JSONValue, field: String) throws -> String {
        guard case .string(let text) = value else {
            throw APIError.invalidField(field, "\(field) must be a string, got \(value.kindName)")
        }
        return text
    }

    static func optionalString(_ value: JSONValue, field: String) throws -> String? {
        value == .null ? nil : try string(value, field: field)
    }

    /// An integer field; a whole number written with a fraction or exponent (8.0, 1e2) counts.
    static func integer(_ value: JSONValue, field: String) throws -> Int {
        if let int = value.int64 { return Int(int) }
        if case .number(let text) = value {
            if let double = value.double, double.rounded() == double, abs(double) < 1e15 { return Int(double) }
            if !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) {
                throw APIError.invalidField(field, "\(field) is out of range, got \(value.brief)")
            }
        }
        throw APIError.invalidField(field, "\(field) must be an integer, got \(value.brief)")
    }

    static func bool(_ value: JSONValue, field: String) throws -> Bool {
        guard case .bool(let flag) = value else {
            throw APIError.invalidField(field, "\(field) must be true or false, got \(value.brief)")
        }
        return flag
    }

    /// The body's top-level members in order (duplicate keys are refused by the strict parser).
    static func members(_ data: Data) throws -> [(key: String, value: JSONValue)] {
        let json: JSONValue
        do { json = try JSONParser.parse(data) } catch {
            throw APIError.invalidJSON("the body is not valid JSON: \(error)")
        }
        guard let members = json.objectMembers else { throw APIError.invalidJSON("the body must be a JSON object") }
        return members
    }

    static func object(_ data: Data) throws -> [String: JSONValue] {
        Dictionary(uniqueKeysWithValues: try members(data).map { ($0.key, $0.value) })
    }

    static func number(_ value: JSONValue, field: String) throws -> Double {
        guard let double = value.double else {
            throw APIError.invalidField(field, "\(field) must be a number, got \(value.kindName)")
        }
        return double
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
