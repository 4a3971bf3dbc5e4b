// A component config (config.json, scheduler_config.json) as a JSON object that keeps what it was
// written with: key order, and numbers as their text (1.0 stays 1.0, which transformers' strict
// configs require of float fields), so a family default can be completed and written back out.
import Foundation

public struct JSONConfig {
    public private(set) var members: [(key: String, value: JSONValue)]

    public init(members: [(key: String, value: JSONValue)]) { self.members = members }

    /// Reads a JSON object file (Python's NaN/Infinity allowed, as diffusers writes them).
    public init(contentsOf url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else { throw ModelLoadingError.missingFile(url) }
        let value: JSONValue
        do {
            value = try JSONParser.parseAllowingNonFinite(data)
        } catch {
            throw ModelLoadingError.malformedConfig(url, "\(error)")
        }
        guard let members = value.objectMembers else {
            throw ModelLoadingError.malformedConfig(url, "expected a JSON object, found \(value.kindName)")
        }
        self.members = members
    }

    public subscript(key: String) -> JSONValue? {
        get { members.first { $0.key == key }?.value }
        set {
            if let i = members.firstIndex(where: { $0.key == key }) {
                if let newValue { members[i].value = newValue } else { members.remove(at: i) }
            } else if let newValue {
                members.append((key, newValue))
            }
        }
    }

    /// Pretty-printed JSON text, ending in a newline.
    public func data() -> Data { Data((JSONValue.object(members).serialized() + "\n").utf8) }
}

extension JSONValue {
    public static func int(_ value: Int) -> JSONValue { .number(String(value)) }
    public static func ints(_ values: [Int]) -> JSONValue { .array(values.map(JSONValue.int)) }
    public static func strings(_ values: [String]) -> JSONValue { .array(values.map(JSONValue.string)) }

    /// JSON text, indented by two spaces a level.
    public func serialized(level: Int = 0) -> String {
        let pad = String(repeating: "  ", count: level + 1), end = String(repeating: "  ", count: level)
        switch self {
        case let .object(members):
            if members.isEmpty { return "{}" }
            return "{\n" + members.map { pad + JSONWriter.quote($0.key) + ": " + $0.value.serialized(level: level + 1) }
                .joined(separator: ",\n") + "\n" + end + "}"
        case let .array(values):
            if values.isEmpty { return "[]" }
            return "[\n" + values.map { pad + $0.serialized(level: level + 1) }.joined(separator: ",\n") + "\n" + end + "]"
        case let .string(s): return JSONWriter.quote(s)
        case let .number(text): return text
        case let .bool(b): return b ? "true" : "false"
        case .null: return "null"
        }
    }
}
