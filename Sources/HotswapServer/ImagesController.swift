// POST /v1/images.
import Foundation
import HTTPTypes
import HotswapLoRA
import HotswapPipeline
import HotswapStore
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

struct ImagesController<Context: RequestContext>: Sendable {
    let service: ImageService

    func addRoutes(to router: Router<Context>) {
        router.post("/v1/images") { request, context in
            try await self.create(request: request, context: context)
        }
    }

    /// Parse, submit to the queue (the worker runs the one render path), respond.
    func create(request: Request, context: Context) async throws -> Response {
        var request = request
        let total = Stopwatch()
        var logger = context.logger
        var record = RequestRecord(createdAt: Date(), requestId: context.id)
        func refuse(_ error: APIError, _ outcome: ServerMetrics.Outcome) -> APIError {
            service.metrics.count(outcome)
            logger.notice("image request refused", metadata: [
                "status": .stringConvertible(error.status.code), "code": .string(error.code),
                "field": .string(error.field ?? ""), "message": .string(error.message),
            ])
            return error
        }
        /// A refusal after the request was accepted for rendering is also a timing row.
        func fail(_ error: APIError, _ outcome: ServerMetrics.Outcome) -> APIError {
            record.status = Int(error.status.code)
            record.fail(outcome.rawValue, error.message)
            record.totalMs = total.elapsedMs
            service.record(record)
            return refuse(error, outcome)
        }

        switch service.readiness {
        case .ready: break
        case .stopping:
            throw refuse(APIError(.serviceUnavailable, code: "shutting_down", message: "the server is shutting down"), .unavailable)
        case .starting, .failed:
            throw refuse(APIError.notReady(), .unavailable)
        }

        // Parse and check (the engine's one validator, before the job waits in the queue).
        let resolved: ResolvedRequest
        var body: GenerationRequest?
        do {
            let bytes = try await request.collectBody(upTo: service.configuration.maxBodyBytes)
            let parsed = try ImageRequestBody.parse(Data(buffer: bytes), queryAdapter: request.uri.queryParameters.get("adapter"))
            body = parsed
            resolved = try service.generator.prepare(parsed)
        } catch is NIOTooManyBytesError {
            throw refuse(APIError.bodyTooLarge(limit: service.configuration.maxBodyBytes), .invalid)
        } catch {
            let (apiError, outcome) = APIError.from(error, adapters: body?.adapters ?? [])
            throw refuse(apiError, outcome)
        }
        logger[metadataKey: "adapters"] = .string(resolved.request.adaptersLabel)

        // A full queue is refused before the disconnect watch starts, so the connection stays open.
        if service.queue.waiting >= service.queue.depth {
            throw refuse(queueFull(), .rejected)
        }
        let generator = service.generator
        let ticketBox = NIOLockedValueBox<JobTicket?>(nil)
        let disconnected = NIOLockedValueBox(false)
        let job: JobResult<(RenderedImage, RequestRecord)>
        do {
            let started = record
            job = try await request.body.consumeWithInboundCloseHandler { _ in
                try await service.queue.submit(ticketHandler: { ticket in
                    ticketBox.withLockedValue { $0 = ticket }
                    if disconnected.withLockedValue({ $0 }) { ticket.cancel() }
                }) { ticket in
                    var record = started
                    do {
                        let image = try generator.render(resolved, record: &record, shouldContinue: { !ticket.isCancelled })
                        return (image, record)
                    } catch {
                        throw RenderFailure(error: error, record: record)
                    }
                }
            } onInboundClosed: {
                disconnected.withLockedValue { $0 = true }
                ticketBox.withLockedValue { $0 }?.cancel()
            }
        } catch let error as JobQueueError {
            if case .timedOut(let waitedMs) = error { service.metrics.recordQueueWait(ms: waitedMs) }
            throw refuse(queueError(error), outcomeOf(error))
        } catch let failure as RenderFailure {
            // The job ran and failed: its row keeps the phases it reached.
            record = failure.record
            var (apiError, outcome) = APIError.from(failure.error, adapters: resolved.request.adapters)
            apiError.headers[.connection] = "close"
            throw fail(apiError, outcome)
        }

        // Answer.
        let (image, rendered) = job.value
        record = rendered
        record.queueMs = job.queueMs
        record.status = 200
        record.totalMs = total.elapsedMs
        service.metrics.count(.ok)
        service.metrics.recordJob(record)
        let swap = record.swap ?? SwapReport(cache: .none)
        let inferenceMs = record.generation?.inferenceMs ?? 0
        service.noteJobDuration(swap.totalMs + inferenceMs)
        service.record(record)
        logger.info("image", metadata: [
            "status": "200", "seed": .stringConvertible(image.seed), "size": .string("\(image.width)x\(image.height)"),
            "steps": .stringConvertible(resolved.request.steps), "cache": .string(swap.cache.rawValue),
            "queue_ms": .string(format(job.queueMs)), "swap_ms": .string(format(swap.totalMs)),
            "inference_ms": .string(format(inferenceMs)), "total_ms": .string(format(record.totalMs ?? 0)),
        ])

        var headers: HTTPFields = [
            .xSeed: String(image.seed),
            .xQueueMs: format(job.queueMs),
            .xSwapMs: format(swap.totalMs),
            .xInferenceMs: format(inferenceMs),
            .xAdapterCache: swap.cache.rawValue,
        ]
        // Watching for the client's disconnect consumed the connection's inbound stream, so Hummingbird
        // closes the connection after this response: say so.
        headers[.connection] = "close"
        let wantsJSON = request.headers[values: .accept].contains { $0.lowercased().contains("application/json") }
        if wantsJSON {
            let generation = record.generation ?? GenerationTimings()
            let payload = ImageJSON(
                image_base64: image.png.base64EncodedString(), seed: image.seed, width: image.width,
                height: image.height, scheduler: image.scheduler.rawValue,
                adapters: resolved.request.adapters.map { .init(name: $0.name, scale: $0.scale) }, adapter_cache: swap.cache.rawValue,
                timings: .init(queue_ms: job.queueMs, swap_ms: swap.totalMs, unload_ms: swap.unloadMs,
                               load_ms: swap.loadMs, apply_ms: swap.applyMs, text_encode_ms: generation.textEncodeMs,
                               denoise_ms: generation.denoiseMs, decode_ms: generation.decodeMs,
                               inference_ms: inferenceMs, total_ms: record.totalMs ?? 0))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            headers[.contentType] = "application/json"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(payload))))
        }
        headers[.contentType] = "image/png"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: image.png)))
    }

    /// A render that threw, with the record as far as it got.
    struct RenderFailure: Error {
        var error: any Error
        var record: RequestRecord
    }

    func queueError(_ error: JobQueueError) -> APIError {
        switch error {
        case .full:
            var error = queueFull()
            error.headers[.connection] = "close"
            return error
        case .timedOut(let waitedMs):
            return APIError(.serviceUnavailable, code: "queue_timeout",
                            message: "the job waited \(Int(waitedMs / 1000)) s in the queue, longer than the request timeout of \(Int(service.configuration.requestTimeout)) s",
                            headers: [.retryAfter: String(service.retryAfterSeconds()), .connection: "close"])
        case .cancelled:
            return APIError(.serviceUnavailable, code: "cancelled", message: "the client went away before the job started",
                            headers: [.connection: "close"])
        case .shuttingDown:
            return APIError(.serviceUnavailable, code: "shutting_down", message: "the server is shutting down",
                            headers: [.connection: "close"])
        }
    }

    func outcomeOf(_ error: JobQueueError) -> ServerMetrics.Outcome {
        switch error {
        case .full: return .rejected
        case .timedOut: return .timedOut
        case .cancelled: return .cancelled
        case .shuttingDown: return .unavailable
        }
    }

    func queueFull() -> APIError {
        APIError(.tooManyRequests, code: "queue_full",
                 message: "\(service.queue.depth) jobs are already waiting; retry later",
                 headers: [.retryAfter: String(service.retryAfterSeconds())])
    }

    struct ImageJSON: Encodable {
        struct Timings: Encodable {
            var queue_ms, swap_ms, unload_ms, load_ms, apply_ms, text_encode_ms, denoise_ms, decode_ms, inference_ms, total_ms: Double
        }
        var image_base64: String
        var seed: UInt64
        var width: Int
        var height: Int
        var scheduler: String
        struct Adapter: Encodable { var name: String; var scale: Float }
        var adapters: [Adapter]
        var adapter_cache: String
        var timings: Timings
    }
}

extension HTTPField.Name {
    static let xSeed = Self("X-Seed")!
    static let xQueueMs = Self("X-Queue-Ms")!
    static let xSwapMs = Self("X-Swap-Ms")!
    static let xInferenceMs = Self("X-Inference-Ms")!
    static let xAdapterCache = Self("X-Adapter-Cache")!
}
