// The one way every route renders: a job of one or more checked requests goes through the same
// queue, swap, timing rows, metrics and job registry, whichever API it came from. The routes only
// parse their own request shape and format their own answer.
import Foundation
import HTTPTypes
import HotswapLoRA
import HotswapPipeline
import HotswapStore
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The API a job came through (recorded in its timing rows and its job status).
enum ClientAPI: String, Sendable {
    case images         // POST /v1/images
    case a1111          // POST /sdapi/v1/txt2img
    case openai         // POST /v1/images/generations
}

/// What a route hands to the queue: images rendered one after another on the worker, in order
/// (A1111's batch_size x n_iter, OpenAI's n).
struct RenderJob: Sendable {
    var api: ClientAPI
    var images: [ResolvedRequest]
}

/// What a finished job gives back.
struct RenderJobOutput: Sendable {
    var id: String
    var images: [RenderedImage]
    var records: [RequestRecord]
    var queueMs: Double
    /// POST /sdapi/v1/interrupt stopped it: `images` are those finished before.
    var interrupted: Bool

    /// The images, for APIs that have no way to answer "stopped before any image" but an error.
    func requireImages() throws -> [RenderedImage] {
        guard !images.isEmpty else {
            throw APIError(.serviceUnavailable, code: interrupted ? "interrupted" : "generation_failed",
                           message: interrupted ? "the job was stopped by POST /sdapi/v1/interrupt before its first image"
                                                : "the job finished without an image",
                           headers: [.connection: "close"])
        }
        return images
    }
}

extension ImageService {
    /// 503 unless the model is loaded and the server is not stopping.
    func checkReady() throws {
        switch readiness {
        case .ready: return
        case .stopping:
            throw APIError(.serviceUnavailable, code: "shutting_down", message: "the server is shutting down")
        case .starting, .failed:
            throw APIError.notReady()
        }
    }

    /// The first steps of every image route: 503 unless ready, the body (413 past the limit), the
    /// route's own parser; each refusal logged and counted. `request` keeps the collected body,
    /// whose end the job's disconnect watch then waits on.
    func readBody<T>(_ request: inout Request, context: some RequestContext, parse: (Data) throws -> T) async throws -> T {
        let logger = context.logger
        do { try checkReady() } catch let error as APIError { throw refuse(error, .unavailable, logger: logger) }
        do {
            let bytes = try await request.collectBody(upTo: configuration.maxBodyBytes)
            return try parse(Data(buffer: bytes))
        } catch is NIOTooManyBytesError {
            throw refuse(APIError.bodyTooLarge(limit: configuration.maxBodyBytes), .invalid, logger: logger)
        } catch {
            let (apiError, outcome) = APIError.from(error)
            throw refuse(apiError, outcome, logger: logger)
        }
    }

    /// Logs and counts a refusal (a request that never produced an image).
    func refuse(_ error: APIError, _ outcome: ServerMetrics.Outcome, logger: Logger) -> APIError {
        metrics.count(outcome)
        logger.notice("image request refused", metadata: [
            "status": .stringConvertible(error.status.code), "code": .string(error.code),
            "field": .string(error.field ?? ""), "message": .string(error.message),
        ])
        return error
    }

    /// Checks a parsed request with the engine's one validator, mapping its errors to the API's.
    func prepare(_ request: GenerationRequest, logger: Logger) throws -> ResolvedRequest {
        do {
            return try generator.prepare(request)
        } catch {
            let (apiError, outcome) = APIError.from(error, adapters: request.adapters)
            throw refuse(apiError, outcome, logger: logger)
        }
    }

    /// Runs a job for a waiting client: queued (429 when full), rendered on the worker, each image
    /// a timing row. When the client disconnects the job is cancelled (dropped from the queue, or
    /// stopped at its next step). Throws `APIError`.
    /// `keepsImages`: the images also stay in the registry for GET /v1/jobs/{id}/image (OpenAI's
    /// response_format "url").
    func runJob(_ job: RenderJob, request: Request, context: some RequestContext,
                keepsImages: Bool = false) async throws -> RenderJobOutput {
        var logger = context.logger
        try checkQueueSpace(logger: logger)
        let id = jobs.create(api: job.api.rawValue, images: job.images.count, steps: job.images.first?.request.steps ?? 0,
                             keepsImages: keepsImages, route: Self.route(of: request))
        logger[metadataKey: "job"] = .string(id)
        let ticketBox = NIOLockedValueBox<JobTicket?>(nil)
        let disconnected = NIOLockedValueBox(false)
        do {
            let output = try await request.body.consumeWithInboundCloseHandler { _ in
                try await self.enqueue(job, id: id, requestId: context.id, logger: logger, ticketHandler: { ticket in
                    ticketBox.withLockedValue { $0 = ticket }
                    if disconnected.withLockedValue({ $0 }) { ticket.cancel() }
                })
            } onInboundClosed: {
                disconnected.withLockedValue { $0 = true }
                ticketBox.withLockedValue { $0 }?.cancel()
            }
            return output
        } catch let error as APIError {
            // Watching for the client's disconnect consumed the connection's inbound stream, so
            // Hummingbird closes the connection after this answer: say so.
            var error = error
            error.headers[.connection] = "close"
            jobs.failed(id, error)
            throw error
        }
    }

    /// Queues a job whose client does not wait (POST /v1/images?async=true): returns its id at once
    /// (429 when the queue is full); the images stay in the registry for GET /v1/jobs/{id}/image.
    func submitDetached(_ job: RenderJob, request: Request, context: some RequestContext) throws -> String {
        var logger = context.logger
        try checkQueueSpace(logger: logger)
        let id = jobs.create(api: job.api.rawValue, images: job.images.count, steps: job.images.first?.request.steps ?? 0,
                             keepsImages: true, route: Self.route(of: request))
        logger[metadataKey: "job"] = .string(id)
        let requestId = context.id
        Task { [logger] in
            do {
                _ = try await self.enqueue(job, id: id, requestId: requestId, logger: logger, ticketHandler: { _ in })
            } catch let error as APIError {
                self.jobs.failed(id, error)
            } catch {
                self.jobs.failed(id, APIError(.internalServerError, code: "generation_failed", message: "\(error)"))
            }
        }
        return id
    }

    /// What a hashing balancer routed this request by, so the job's URLs route back to this
    /// replica: its `?adapter=` (or a `?route=` it already carried), else the balancer's request id
    /// (nginx sends X-Request-Id, which it hashed when the request named no adapter).
    static func route(of request: Request) -> String? {
        let query = request.uri.queryParameters
        if let adapter = query.get("adapter"), AdapterName.isValid(adapter) { return "adapter=\(adapter)" }
        let key = query.get("route") ?? request.headers[HTTPField.Name("X-Request-Id")!]
        guard let key, (1...128).contains(key.utf8.count), key.utf8.allSatisfy({ $0 < 128 && (isalnum(Int32($0)) != 0 || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")) }) else {
            return nil
        }
        return "route=\(key)"
    }

    /// A full queue is refused before anything waits.
    private func checkQueueSpace(logger: Logger) throws {
        if queue.waiting >= queue.depth { throw refuse(queueFull(), .rejected, logger: logger) }
    }

    /// The job on the queue; every failure becomes an `APIError` (and a timing row when the job ran).
    private func enqueue(_ job: RenderJob, id: String, requestId: String, logger: Logger,
                         ticketHandler: (JobTicket) -> Void) async throws -> RenderJobOutput {
        let createdAt = Date()
        let generator = self.generator
        let jobs = self.jobs
        let result: JobResult<RenderJobOutput>
        do {
            result = try await queue.submit(ticketHandler: ticketHandler) { ticket in
                jobs.started(id)
                var output = RenderJobOutput(id: id, images: [], records: [], queueMs: 0, interrupted: false)
                for resolved in job.images {
                    var record = RequestRecord(createdAt: createdAt, requestId: requestId)
                    record.api = job.api.rawValue
                    let started = Stopwatch()
                    do {
                        let image = try generator.render(resolved, record: &record) { step, total in
                            jobs.progress(id, step: step, of: total) && !ticket.isCancelled
                        }
                        record.totalMs = started.elapsedMs
                        output.images.append(image)
                        output.records.append(record)
                        jobs.imageDone(id, image)
                    } catch GenerationError.cancelled where jobs.wasInterrupted(id) && !ticket.isCancelled {
                        record.totalMs = started.elapsedMs
                        record.fail("interrupted", "stopped by POST /sdapi/v1/interrupt")
                        output.records.append(record)
                        output.interrupted = true
                        break
                    } catch {
                        record.totalMs = started.elapsedMs
                        throw RenderFailure(error: error, record: record, finished: output.records,
                                            adapters: resolved.request.adapters)
                    }
                }
                return output
            }
        } catch let error as JobQueueError {
            if case .timedOut(let waitedMs) = error { metrics.recordQueueWait(ms: waitedMs) }
            throw refuse(queueError(error), outcomeOf(error), logger: logger)
        } catch let failure as RenderFailure {
            // The job ran and failed: the images it finished and the failing one are rows too.
            let (apiError, outcome) = APIError.from(failure.error, adapters: failure.adapters)
            var rows = failure.finished
            var failed = failure.record
            failed.status = Int(apiError.status.code)
            failed.fail(outcome.rawValue, apiError.message)
            rows.append(failed)
            recordRows(rows, queueMs: nil, status: Int(apiError.status.code))
            throw refuse(apiError, outcome, logger: logger)
        }

        var output = result.value
        output.queueMs = result.queueMs
        let first = output.records.first
        output.records = recordRows(output.records, queueMs: result.queueMs, status: 200)
        metrics.count(.ok)
        jobs.finished(id)
        var swapMs = 0.0, inferenceMs = 0.0
        for record in output.records where record.outcome == "ok" {
            metrics.recordJob(record)
            let jobMs = (record.swap?.totalMs ?? 0) + (record.generation?.inferenceMs ?? 0)
            noteJobDuration(jobMs)
            swapMs += record.swap?.totalMs ?? 0
            inferenceMs += record.generation?.inferenceMs ?? 0
        }
        logger.info("image", metadata: [
            "status": "200", "api": .string(job.api.rawValue), "images": .stringConvertible(output.images.count),
            "seed": .stringConvertible(output.images.first?.seed ?? 0), "adapters": .string(first?.adapters ?? ""),
            "steps": .stringConvertible(job.images.first?.request.steps ?? 0),
            "cache": .string(first?.swap?.cache.rawValue ?? ""), "queue_ms": .string(format(result.queueMs)),
            "swap_ms": .string(format(swapMs)), "inference_ms": .string(format(inferenceMs)),
            "interrupted": .stringConvertible(output.interrupted),
        ])
        return output
    }

    /// Writes a job's rows: the first carries the queue time; each row's total is its own share
    /// (so the rows of one job add up to the job's time).
    @discardableResult
    private func recordRows(_ rows: [RequestRecord], queueMs: Double?, status: Int) -> [RequestRecord] {
        var written: [RequestRecord] = []
        for (i, row) in rows.enumerated() {
            var row = row
            row.queueMs = i == 0 ? queueMs : 0
            row.totalMs = (row.totalMs ?? 0) + (row.queueMs ?? 0)
            if row.status == nil { row.status = status }
            record(row)
            written.append(row)
        }
        return written
    }

    func queueError(_ error: JobQueueError) -> APIError {
        switch error {
        case .full:
            var error = queueFull()
            error.headers[.connection] = "close"
            return error
        case .timedOut(let waitedMs):
            return APIError(.serviceUnavailable, code: "queue_timeout",
                            message: "the job waited \(Int(waitedMs / 1000)) s in the queue, longer than the request timeout of \(Int(configuration.requestTimeout)) s",
                            headers: [.retryAfter: String(retryAfterSeconds()), .connection: "close"])
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
                 message: "\(queue.depth) jobs are already waiting; retry later",
                 headers: [.retryAfter: String(retryAfterSeconds())])
    }
}

/// A render that threw, with the row of the failing image as far as it got and the rows of the
/// images the job finished before it.
struct RenderFailure: Error {
    var error: any Error
    var record: RequestRecord
    var finished: [RequestRecord]
    /// The failing image's adapters (to name the field of one that does not exist).
    var adapters: [AdapterSpec]
}
