// GET/PUT/DELETE /v1/adapters[/{name}].
import Foundation
import Hummingbird
import NIOCore

struct AdaptersController<Context: RequestContext>: Sendable {
    let service: ImageService

    func addRoutes(to router: Router<Context>) {
        router.get("/v1/adapters") { _, _ in try self.list() }
        router.get("/v1/adapters/:name") { _, context in try self.show(context: context) }
        router.put("/v1/adapters/:name") { request, context in try await self.upload(request: request, context: context) }
        router.delete("/v1/adapters/:name") { _, context in try self.remove(context: context) }
    }

    var directory: URL { service.configuration.adaptersDirectory }

    /// Uploads stream into `<dir>/.upload-<UUID>.part` until validated and renamed.
    static var uploadPrefix: String { ".upload-" }

    func list() throws -> Response {
        let adapters = try service.generator.listAdapters().sorted { $0.name < $1.name }
        return try jsonResponse(["adapters": adapters])
    }

    func show(context: Context) throws -> Response {
        let name = try validName(context)
        guard let adapter = try service.generator.describeAdapter(named: name) else { throw APIError.adapterNotFound(name, field: "name") }
        return try jsonResponse(adapter)
    }

    /// The body is streamed to a hidden temporary file in the adapters directory (so the rename is
    /// atomic), checked against the size limit as it arrives, parsed and key-checked, and only then
    /// renamed to `<name>.safetensors`: a half-written or invalid upload is never visible.
    func upload(request: Request, context: Context) async throws -> Response {
        let name = try validName(context)
        guard let destination = AdapterName.fileURL(for: name, in: directory) else { throw APIError.invalidAdapterName(name) }
        let limit = service.configuration.maxAdapterBytes
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError(.contentTooLarge, code: "body_too_large", message: "the adapter file is larger than \(limit) bytes")
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let temp = directory.appendingPathComponent("\(Self.uploadPrefix)\(UUID().uuidString).part")
        guard FileManager.default.createFile(atPath: temp.path, contents: nil),
              let handle = try? FileHandle(forWritingTo: temp) else {
            throw APIError(.internalServerError, code: "storage_error", message: "cannot write to the adapters directory")
        }
        var keepTemp = false
        defer {
            try? handle.close()
            if !keepTemp { try? FileManager.default.removeItem(at: temp) }
        }
        var total = 0
        for try await buffer in request.body {
            total += buffer.readableBytes
            if total > limit {
                throw APIError(.contentTooLarge, code: "body_too_large", message: "the adapter file is larger than \(limit) bytes")
            }
            try handle.write(contentsOf: Data(buffer: buffer))
        }
        guard total > 0 else {
            throw APIError(.badRequest, code: "empty_body", message: "the body must be a safetensors file")
        }
        try handle.synchronize()
        let description: AdapterDescription
        do {
            description = try service.generator.validateAdapter(at: temp, name: name)
        } catch {
            // Name the upload, not the temporary file.
            let message = "\(error)".replacingOccurrences(of: temp.path, with: "\(name).safetensors")
                .replacingOccurrences(of: temp.lastPathComponent, with: "\(name).safetensors")
            service.logger.notice("adapter upload refused", metadata: ["adapter": .string(name), "reason": .string(message)])
            throw APIError(.unprocessableContent, code: "invalid_adapter", message: message)
        }
        let existed = FileManager.default.fileExists(atPath: destination.path)
        guard rename(temp.path, destination.path) == 0 else {
            throw APIError(.internalServerError, code: "storage_error", message: "cannot move the upload into place (errno \(errno))")
        }
        keepTemp = true
        service.generator.adapterChanged(named: name)
        service.logger.info("adapter uploaded", metadata: ["adapter": .string(name), "bytes": .stringConvertible(total),
                                                           "replaced": .stringConvertible(existed)])
        var shown = (try? service.generator.describeAdapter(named: name)) ?? description
        shown.name = name
        var response = try jsonResponse(shown, status: existed ? .ok : .created)
        response.headers[.location] = "/v1/adapters/\(name)"
        return response
    }

    func remove(context: Context) throws -> Response {
        let name = try validName(context)
        guard let url = AdapterName.fileURL(for: name, in: directory), FileManager.default.fileExists(atPath: url.path) else {
            throw APIError.adapterNotFound(name, field: "name")
        }
        do {
            try FileManager.default.removeItem(at: url)
        } catch {
            throw APIError(.internalServerError, code: "storage_error", message: "cannot delete \(name): \(error)")
        }
        service.generator.adapterChanged(named: name)
        service.logger.info("adapter deleted", metadata: ["adapter": .string(name)])
        return Response(status: .noContent)
    }

    private func validName(_ context: Context) throws -> String {
        let raw = context.parameters.get("name") ?? ""
        let name = raw.removingPercentEncoding ?? raw
        guard AdapterName.isValid(name), AdapterName.isValid(raw) else { throw APIError.invalidAdapterName(name) }
        return name
    }
}

func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return Response(status: status, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}
