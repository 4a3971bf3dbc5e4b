import Foundation

/// A config value that diffusers accepts either as one value for every block or as a per-block list.
public enum OneOrMany<Value: Decodable & Sendable>: Decodable, Sendable {
    case one(Value)
    case many([Value])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let list = try? container.decode([Value].self) {
            self = .many(list)
        } else {
            self = .one(try container.decode(Value.self))
        }
    }

    /// The per-block values for `count` blocks.
    public func expanded(_ count: Int) -> [Value] {
        switch self {
        case .one(let value): return Array(repeating: value, count: count)
        case .many(let values): return values
        }
    }
}

/// Reads a component's config.json into a Decodable config, with errors naming the file.
public func loadConfig<Config: Decodable>(_ type: Config.Type, from url: URL) throws -> Config {
    guard FileManager.default.fileExists(atPath: url.path) else { throw ModelLoadingError.missingFile(url) }
    do {
        return try configDecoder().decode(Config.self, from: Data(contentsOf: url))
    } catch let error as DecodingError {
        throw ModelLoadingError.malformedConfig(url, describe(error))
    } catch {
        throw ModelLoadingError.malformedConfig(url, "\(error)")
    }
}

/// diffusers writes Python's float("-inf") as a bare -Infinity (e.g. lambda_min_clipped), which
/// strict JSON rejects; JSON5 accepts it.
public func configDecoder() -> JSONDecoder {
    let decoder = JSONDecoder()
    decoder.allowsJSON5 = true
    return decoder
}

func describe(_ error: DecodingError) -> String {
    func path(_ context: DecodingError.Context) -> String {
        context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
    switch error {
    case .keyNotFound(let key, let context):
        return "missing key \((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))"
    case .typeMismatch(_, let context), .valueNotFound(_, let context):
        return "wrong type at \(path(context)): \(context.debugDescription)"
    case .dataCorrupted(let context):
        return "invalid JSON at \(path(context)): \(context.debugDescription)"
    @unknown default:
        return "\(error)"
    }
}
