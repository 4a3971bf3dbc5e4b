// Builds the Hummingbird application: routes, the warm-up service, graceful shutdown.
import Foundation
import Hummingbird
import HummingbirdCore
import NIOHTTP1
import Logging
import NIOCore
import ServiceLifecycle

/// Every route the server answers, as "METHOD /path" (path parameters as {name}); the OpenAPI
/// test checks docs/openapi.yaml against this list.
public let serverRoutes: [String] = [
    "GET /healthz",
    "GET /readyz",
    "POST /v1/images",
    "GET /v1/jobs/{id}",
    "GET /v1/jobs/{id}/image",
    "POST /v1/images/generations",
    "GET /v1/models",
    "GET /v1/models/{model}",
    "POST /sdapi/v1/txt2img",
    "GET /sdapi/v1/progress",
    "POST /sdapi/v1/interrupt",
    "GET /sdapi/v1/loras",
    "GET /sdapi/v1/sd-models",
    "GET /sdapi/v1/samplers",
    "GET /sdapi/v1/schedulers",
    "GET /sdapi/v1/options",
    "GET /sdapi/v1/scripts",
    "GET /v1/adapters",
    "GET /v1/adapters/{name}",
    "PUT /v1/adapters/{name}",
    "DELETE /v1/adapters/{name}",
    "GET /v1/timings",
    "GET /metrics",
]

public func buildRouter(service: ImageService) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.add(middleware: ErrorMiddleware())

    router.get("/healthz") { _, _ in
        try jsonResponse(["status": "ok"])
    }
    router.get("/readyz") { _, _ in
        switch service.readiness {
        case .ready:
            var body = ["status": "ready"]
            if let warmup = service.warmup { body["model"] = warmup.model }
            return try jsonResponse(body)
        case .starting:
            var response = try jsonResponse(["status": "starting"], status: .serviceUnavailable)
            response.headers[.retryAfter] = "1"
            return response
        case .stopping:
            return try jsonResponse(["status": "stopping"], status: .serviceUnavailable)
        case .failed(let message):
            return try jsonResponse(["status": "failed", "message": message], status: .serviceUnavailable)
        }
    }
    ImagesController<BasicRequestContext>(service: service).addRoutes(to: router)
    JobsController<BasicRequestContext>(service: service).addRoutes(to: router)
    OpenAIController<BasicRequestContext>(service: service).addRoutes(to: router)
    A1111Controller<BasicRequestContext>(service: service).addRoutes(to: router)
    AdaptersController<BasicRequestContext>(service: service).addRoutes(to: router)
    router.get("/v1/timings") { request, _ in
        var limit = 50
        if let text = request.uri.queryParameters.get("limit") {
            guard let value = Int(text), (1...10_000).contains(value) else {
                throw APIError.invalidField("limit", "limit must be an integer in 1...10000, got '\(text.prefix(32))'")
            }
            limit = value
        }
        let rows = try service.store.latestRequests(limit: limit)
        return try jsonResponse(["requests": rows])
    }
    router.get("/metrics") { _, _ in
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(string: service.metrics.text())))
    }
    return router
}

/// The application plus, as its service, the start-up (load, preload, warm-up) and the final
/// shutdown step (wait for the running job, close the database).
public func buildApplication(service: ImageService, logger: Logger? = nil)
    -> Application<RouterResponder<BasicRequestContext>> {
    let logger = logger ?? service.logger
    let settings = service.configuration
    var app = Application(
        router: buildRouter(service: service),
        server: .http1(configuration: .init(
            additionalChannelHandlers: [RequestDeadlineHandler(headerTimeout: .nanoseconds(Int64(settings.headerTimeout * 1e9)),
                                                               bodyTimeout: .nanoseconds(Int64(settings.bodyTimeout * 1e9)))],
            idleTimeout: .nanoseconds(Int64(settings.idleTimeout * 1e9)))),
        configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "hotswap",
                             availableConnectionsDelegate: MaximumAvailableConnections(settings.maxConnections)),
        onServerRunning: { channel in
            let address = channel.localAddress
            logger.notice("listening", metadata: [
                "address": .string("\(address?.ipAddress ?? service.configuration.host):\(address?.port ?? service.configuration.port)"),
            ])
        },
        logger: logger)
    app.addServices(LifecycleService(service: service))
    return app
}

/// Runs `hotswap serve` until SIGTERM or SIGINT: stop taking requests, finish the running job,
/// flush the database, return (the process then exits 0).
public func runServer(service: ImageService, logger: Logger) async throws {
    let app = buildApplication(service: service, logger: logger)
    // Graceful shutdown runs in reverse order: the notifier first (drop waiting jobs at once, so the
    // HTTP server does not wait for the whole queue), then the application (stop accepting, answer
    // the running job), whose lifecycle service then closes the worker and the database.
    let group = ServiceGroup(configuration: .init(
        services: [app, ShutdownNotifier(service: service)],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger))
    try await group.run()
}

struct LifecycleService: Service {
    let service: ImageService

    func run() async throws {
        try await service.start()
        // Wait for shutdown (graceful, or cancellation when another service failed).
        try? await gracefulShutdown()
        service.finishShutdown()
    }
}

struct ShutdownNotifier: Service {
    let service: ImageService

    func run() async throws {
        try? await gracefulShutdown()
        service.beginShutdown()
    }
}

/// Turns anything a route throws that is not already an `APIError` into the API's error shape,
/// so every 4xx/5xx body is `{"error": {"code", "message"}}`.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            // A known path with a method it does not serve: 405 with Allow, not 404.
            if error.status == .notFound {
                let allowed = allowedMethods(path: request.uri.path)
                if !allowed.isEmpty {
                    throw APIError(.methodNotAllowed, code: "method_not_allowed",
                                   message: "\(request.method.rawValue) is not served on \(request.uri.path); use \(allowed.joined(separator: ", "))",
                                   headers: [.allow: allowed.joined(separator: ", ")])
                }
            }
            let code: String
            switch error.status.code {
            case 404: code = "not_found"
            case 405: code = "method_not_allowed"
            case 413: code = "body_too_large"
            default: code = "http_\(error.status.code)"
            }
            throw APIError(error.status, code: code, message: error.body ?? error.status.reasonPhrase, headers: error.headers)
        } catch is NIOTooManyBytesError {
            throw APIError(.contentTooLarge, code: "body_too_large", message: "the request body is too large")
        } catch let error as HTTPParserError {
            throw APIError.framing(error)
        } catch {
            context.logger.error("unhandled error: \(error)")
            throw APIError(.internalServerError, code: "internal_error", message: "\(error)")
        }
    }
}

/// The methods `serverRoutes` serves on `path` ({name} matches one segment).
func allowedMethods(path: String) -> [String] {
    let segments = path.split(separator: "/", omittingEmptySubsequences: true)
    return serverRoutes.compactMap { route -> String? in
        let parts = route.split(separator: " ")
        let pattern = parts[1].split(separator: "/", omittingEmptySubsequences: true)
        guard pattern.count == segments.count else { return nil }
        for (p, s) in zip(pattern, segments) where !(p.hasPrefix("{") && p.hasSuffix("}")) && p != s { return nil }
        return String(parts[0])
    }
}
