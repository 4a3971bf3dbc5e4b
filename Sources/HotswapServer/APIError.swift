import Foundation
import HotswapLoRA
import HotswapPipeline
import HTTPTypes
import Hummingbird
import NIOHTTP1

/// Every error the API answers with: `{"error": {"code", "message", "field"?}}`.
public struct APIError: Error, HTTPResponseError, CustomStringConvertible, Sendable {
    public var status: HTTPResponse.Status
    /// A stable machine-readable code, e.g. "invalid_field", "queue_full".
    public var code: String
    public var message: String
    /// The request field the error is about, when there is one.
    public var field: String?
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, code: String, message: String, field: String? = nil,
                headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    struct Body: Encodable {
        struct Inner: Encodable {
            let code: String
            let message: String
            let field: String?
        }
        let error: Inner
    }

    /// The error shape each API's clients parse: ours, OpenAI's (`{"error": {"message", "type",
    /// "param", "code"}}`, read by the `openai` package) and A1111's (its `handle_exception`:
    /// `{"error", "detail", "body", "errors"}`).
    enum Dialect {
        case native, openAI, a1111

        /// Chosen by the route's path, so every error of a route (including 404/405) has its API's shape.
        static func of(path: String) -> Dialect {
            if path.hasPrefix("/sdapi/") { return .a1111 }
            if path == "/v1/images/generations" || path == "/v1/models" || path.hasPrefix("/v1/models/") { return .openAI }
            return .native
        }
    }

    struct OpenAIBody: Encodable {
        struct Inner: Encodable {
            let message: String
            let type: String
            let param: String?
            let code: String
        }
        let error: Inner
    }

    struct A1111Body: Encodable {
        let error: String
        let detail: String
        let body: String
        let errors: String
        let field: String?
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/json"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data: Data?
        switch Dialect.of(path: request.uri.path) {
        case .native:
            data = try? encoder.encode(Body(error: .init(code: code, message: message, field: field)))
        case .openAI:
            let type: String
            switch status.code {
            case 429: type = "rate_limit_error"
            case 500...: type = "server_error"
            default: type = "invalid_request_error"
            }
            data = try? encoder.encode(OpenAIBody(error: .init(message: message, type: type, param: field, code: code)))
        case .a1111:
            data = try? encoder.encode(A1111Body(error: code, detail: message, body: "", errors: "\(status.code): \(message)", field: field))
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data ?? Data())))
    }

    // MARK: Common cases

    static func invalidField(_ field: String, _ message: String) -> APIError {
        APIError(.badRequest, code: "invalid_field", message: message, field: field)
    }

    static func invalidJSON(_ message: String) -> APIError {
        APIError(.badRequest, code: "invalid_json", message: message)
    }

    static func bodyTooLarge(limit: Int) -> APIError {
        APIError(.contentTooLarge, code: "body_too_large", message: "the request body is larger than \(limit) bytes")
    }

    static func adapterNotFound(_ name: String, field: String = "adapter") -> APIError {
        APIError(.notFound, code: "adapter_not_found", message: "no adapter named '\(name)'", field: field)
    }

    static func invalidAdapterName(_ name: String, field: String = "name") -> APIError {
        APIError(.badRequest, code: "invalid_adapter_name",
                 message: "adapter names match [A-Za-z0-9._-]{1,64} and are not all dots; got '\(name.prefix(80))'",
                 field: field)
    }

    /// The request's HTTP framing is broken (a bad chunk size, an unknown transfer coding, a body
    /// shorter than its Content-Length): the client's fault, and the connection cannot be reused.
    static func framing(_ error: HTTPParserError) -> APIError {
        APIError(.badRequest, code: "bad_framing", message: "malformed HTTP request: \(error)", headers: [.connection: "close"])
    }

    static func notReady() -> APIError {
        APIError(.serviceUnavailable, code: "not_ready", message: "the model is still loading; retry shortly",
                 headers: [.retryAfter: "1"])
    }

    /// Adapter files named without the server's folders (clients know adapters by name).
    static func withoutFolders(_ message: String) -> String {
        message.replacingOccurrences(of: #"/[^\s'"]*/([^/\s'"]+\.safetensors)"#, with: "$1", options: .regularExpression)
    }

    /// The one mapping from an engine error to the API's answer: request errors are 4xx with the
    /// field they are about, an adapter that does not exist 404, one that cannot be used 422,
    /// anything else our fault (500).
    /// `adapters` are the request's, to name the field of an adapter that does not exist.
    static func from(_ error: any Error, adapters: [AdapterSpec] = []) -> (APIError, ServerMetrics.Outcome) {
        switch error {
        case let error as APIError:
            return (error, error.status == .notFound ? .notFound : .invalid)
        case let error as HTTPParserError:
            return (framing(error), .invalid)
        case GenerationError.cancelled:
            return (APIError(.serviceUnavailable, code: "cancelled", message: "the client went away; the job was stopped"), .cancelled)
        case let error as GenerationError:
            return (invalidField(error.field, error.description), .invalid)
        case let error as LoRAError:
            if case .unknownAdapter(let name, _, _) = error {
                let index = adapters.firstIndex { $0.name == name }
                let field = adapters.count > 1 ? "adapters[\(index ?? 0)].name" : "adapter"
                return (adapterNotFound(AdapterManager.displayName(name), field: field), .notFound)
            }
            return (APIError(.unprocessableContent, code: "invalid_adapter", message: withoutFolders(error.description), field: "adapter"), .invalid)
        case let error as AdapterValidationError:
            return (APIError(.unprocessableContent, code: "invalid_adapter", message: error.description, field: "adapter"), .invalid)
        case let error as NonFiniteImageError:
            return (APIError(.unprocessableContent, code: "non_finite_image", message: error.description), .failed)
        default:
            return (APIError(.internalServerError, code: "generation_failed", message: "\(error)"), .failed)
        }
    }
}
