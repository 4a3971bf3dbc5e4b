import Foundation
import HTTPTypes
import Hummingbird

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

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/json"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(Body(error: .init(code: code, message: message, field: field)))) ?? Data()
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
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

    static func notReady() -> APIError {
        APIError(.serviceUnavailable, code: "not_ready", message: "the model is still loading; retry shortly",
                 headers: [.retryAfter: "1"])
    }
}
