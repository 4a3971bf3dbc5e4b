// POST /v1/images.
import Foundation
import HTTPTypes
import HotswapPipeline
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

    /// What the worker hands back: the outcome and its PNG.
    struct Rendered: Sendable {
        var outcome: GenerationOutcome
        var png: Data
    }

    func create(request: Request, context: Context) async throws -> Response {
        let arrived = Date()
        let clock = DispatchTime.now()
        let requestID = context.id
        var request = request
        var logger = context.logger
        func reject(_ error: APIError, _ outcome: ServerMetrics.Outcome) -> APIError {
            service.metrics.count(outcome)
            logger.notice("image request refused", metadata: [
                "status": .stringConvertible(error.status.code), "code": .string(error.code),
                "field": .string(error.field ?? ""), "message": .string(error.message),
            ])
            return error
        }

        switch service.readiness {
        case .ready: break
        case .stopping:
            throw reject(APIError(.serviceUnavailable, code: "shutting_down", message: "the server is shutting down"),
                         .unavailable)
        case .starting, .failed:
            throw reject(APIError.notReady(), .unavailable)
        }

        // Body and fields.
        let bytes: ByteBuffer
        do {
            bytes = try await request.collectBody(upTo: service.configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw reject(APIError.bodyTooLarge(limit: service.configuration.maxBodyBytes), .invalid)
        }
        let body: ImageRequestBody
        let generationRequest: GenerationRequest
        let resolved: (width: Int, height: Int, scheduler: SchedulerName)
        do {
            body = try ImageRequestBody.parse(Data(buffer: bytes), queryAdapter: request.uri.queryParameters.get("adapter"),
                                              limits: service.configuration.limits)
            for (i, adapter) in body.adapters.enumerated() {
                guard let url = AdapterName.fileURL(for: adapter.name, in: service.configuration.adaptersDirectory),
                      FileManager.default.fileExists(atPath: url.path) else {
                    let field = body.adapters.count == 1 ? "adapter" : "adapters[\(i)].name"
                    throw reject(APIError.adapterNotFound(adapter.name, field: field), .notFound)
                }
            }
            generationRequest = body.generationRequest()
            do {
                resolved = try service.generator.resolve(generationRequest)
            } catch let error as GenerationError {
                throw APIError.invalidField(error.field, error.description)
            }
            let pixels = resolved.width * resolved.height
            if pixels > service.configuration.limits.maxPixels {
                throw APIError.invalidField(body.width == nil && body.height != nil ? "height" : "width",
                                            "width x height = \(resolved.width)x\(resolved.height) = \(pixels) pixels is over the limit of \(service.configuration.limits.maxPixels)")
            }
        } catch let error as APIError {
            if error.status == .notFound { throw error }
            throw reject(error, .invalid)
        }
        let adapterLabel = body.adapters.map { "\($0.name):\(formatScale($0.scale))" }.joined(separator: ", ")
        logger[metadataKey: "adapters"] = .string(adapterLabel)

        // Queue and run.
        let job = ImageJob(request: generationRequest, adapters: body.adapters, width: resolved.width,
                           height: resolved.height, scheduler: resolved.scheduler)
        let generator = service.generator
        let infotext = Infotext(prompt: generationRequest.prompt, negativePrompt: generationRequest.negativePrompt ?? "",
                                steps: generationRequest.steps, sampler: resolved.scheduler.samplerLabel,
                                cfgScale: Double(generationRequest.guidance), seed: generationRequest.seed,
                                width: resolved.width, height: resolved.height, modelName: generator.modelName,
                                clipSkip: generationRequest.clipSkip.map { $0 + 1 },
                                extraParameters: body.adapters.isEmpty ? [] : [
                                    ("Adapters", body.adapters.map { "\($0.name):\(formatScale($0.scale))" }
                                        .joined(separator: " ")),
                                ])
        // A full queue is refused before the disconnect watch starts, so the connection stays open.
        if service.queue.waiting >= service.queue.depth {
            throw reject(queueFull(), .rejected)
        }
        let ticketBox = NIOLockedValueBox<JobTicket?>(nil)
        let disconnected = NIOLockedValueBox(false)
        let result: JobResult<Rendered>
        do {
            result = try await request.body.consumeWithInboundCloseHandler { _ in
                try await service.queue.submit(ticketHandler: { ticket in
                    ticketBox.withLockedValue { $0 = ticket }
                    if disconnected.withLockedValue({ $0 }) { ticket.cancel() }
                }) { ticket in
                    let outcome = try generator.generate(job, shouldContinue: { !ticket.isCancelled })
                    var infotext = infotext
                    infotext.loraHashes = outcome.loraHashes.map { (name: $0.name, hash: $0.hash) }
                    let png = try PNGWriter.encode(rgb: outcome.rgb, width: outcome.width, height: outcome.height,
                                                   text: [(key: "parameters", value: infotext.text)])
                    return Rendered(outcome: outcome, png: png)
                }
            } onInboundClosed: {
                disconnected.withLockedValue { $0 = true }
                ticketBox.withLockedValue { $0 }?.cancel()
            }
        } catch let error as JobQueueError {
            switch error {
            case .full:
                var error = queueFull()
                error.headers[.connection] = "close"
                throw reject(error, .rejected)
            case .timedOut(let waitedMs):
                service.metrics.recordQueueWait(ms: waitedMs)
                throw reject(APIError(.serviceUnavailable, code: "queue_timeout",
                                      message: "the job waited \(Int(waitedMs / 1000)) s in the queue, longer than the request timeout of \(Int(service.configuration.requestTimeout)) s",
                                      headers: [.retryAfter: String(service.retryAfterSeconds()), .connection: "close"]), .timedOut)
            case .cancelled:
                throw reject(APIError(.serviceUnavailable, code: "cancelled", message: "the client went away before the job started",
                                      headers: [.connection: "close"]), .cancelled)
            case .shuttingDown:
                throw reject(APIError(.serviceUnavailable, code: "shutting_down", message: "the server is shutting down",
                                      headers: [.connection: "close"]), .unavailable)
            }
        } catch {
            // The job ran and failed: record it, answer 4xx for adapter problems, 500 otherwise.
            var apiError: APIError
            let outcome: ServerMetrics.Outcome
            switch error {
            case GenerationError.cancelled:
                apiError = APIError(.serviceUnavailable, code: "cancelled", message: "the client went away; the job was stopped")
                outcome = .cancelled
            case let error as AdapterValidationError:
                apiError = APIError(.unprocessableContent, code: "invalid_adapter", message: error.description, field: "adapter")
                outcome = .invalid
            case let error as AdapterMissingError:
                apiError = APIError.adapterNotFound(error.name)
                outcome = .notFound
            case let error as GenerationError:
                apiError = APIError.invalidField(error.field, error.description)
                outcome = .invalid
            default:
                apiError = APIError(.internalServerError, code: "generation_failed", message: "\(error)")
                outcome = .failed
            }
            apiError.headers[.connection] = "close"
            record(requestID: requestID, arrived: arrived, clock: clock, adapters: adapterLabel, status: Int(apiError.status.code),
                   outcome: outcome.rawValue, job: job, rendered: nil, queueMs: 0, error: apiError.message)
            throw reject(apiError, outcome)
        }

        // Answer.
        let outcome = result.value.outcome
        let swap = outcome.swap
        let totalMs = Double(DispatchTime.now().uptimeNanoseconds - clock.uptimeNanoseconds) / 1e6
        service.metrics.count(.ok)
        service.metrics.recordJob(queueMs: result.queueMs, swap: swap, inferenceMs: outcome.inferenceMs)
        service.noteJobDuration(swap.totalMs + outcome.inferenceMs)
        record(requestID: requestID, arrived: arrived, clock: clock, adapters: adapterLabel, status: 200, outcome: "ok",
               job: job, rendered: result.value, queueMs: result.queueMs)
        logger.info("image", metadata: [
            "status": "200", "seed": .stringConvertible(outcome.seed), "size": .string("\(outcome.width)x\(outcome.height)"),
            "steps": .stringConvertible(job.request.steps), "cache": .string(swap.cache.rawValue),
            "queue_ms": .string(format(result.queueMs)), "swap_ms": .string(format(swap.totalMs)),
            "inference_ms": .string(format(outcome.inferenceMs)), "total_ms": .string(format(totalMs)),
        ])

        var headers: HTTPFields = [
            .xSeed: String(outcome.seed),
            .xQueueMs: format(result.queueMs),
            .xSwapMs: format(swap.totalMs),
            .xInferenceMs: format(outcome.inferenceMs),
            .xAdapterCache: swap.cache.rawValue,
        ]
        // Watching for the client's disconnect consumed the connection's inbound stream, so Hummingbird
        // closes the connection after this response: say so.
        headers[.connection] = "close"
        let wantsJSON = request.headers[values: .accept].contains { $0.lowercased().contains("application/json") }
        if wantsJSON {
            let payload = ImageJSON(
                image_base64: result.value.png.base64EncodedString(), seed: outcome.seed, width: outcome.width,
                height: outcome.height, scheduler: outcome.scheduler.rawValue,
                adapters: body.adapters, adapter_cache: swap.cache.rawValue,
                timings: .init(queue_ms: result.queueMs, swap_ms: swap.totalMs, unload_ms: swap.unloadMs,
                               load_ms: swap.loadMs, apply_ms: swap.applyMs, text_encode_ms: outcome.timings.textEncodeMs,
                               denoise_ms: outcome.timings.denoiseMs, decode_ms: outcome.timings.decodeMs,
                               inference_ms: outcome.inferenceMs, total_ms: totalMs))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            headers[.contentType] = "application/json"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(payload))))
        }
        headers[.contentType] = "image/png"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: result.value.png)))
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
        var adapters: [AdapterRef]
        var adapter_cache: String
        var timings: Timings
    }

    private func record(requestID: String, arrived: Date, clock: DispatchTime, adapters: String, status: Int, outcome: String,
                        job: ImageJob, rendered: Rendered?, queueMs: Double, error: String? = nil) {
        let swap = rendered?.outcome.swap ?? .nothing
        let timings = rendered?.outcome.timings ?? ImageTimings()
        let row = RequestTiming(
            requestID: requestID, startedAt: arrived.timeIntervalSince1970, adapters: adapters, status: status,
            outcome: outcome, cache: swap.cache.rawValue, queueMs: queueMs, unloadMs: swap.unloadMs, loadMs: swap.loadMs,
            applyMs: swap.applyMs, swapMs: swap.totalMs, textEncodeMs: timings.textEncodeMs, denoiseMs: timings.denoiseMs,
            decodeMs: timings.decodeMs, inferenceMs: rendered?.outcome.inferenceMs ?? 0,
            totalMs: Double(DispatchTime.now().uptimeNanoseconds - clock.uptimeNanoseconds) / 1e6,
            steps: job.request.steps, width: job.width, height: job.height, seed: job.request.seed,
            scheduler: job.scheduler.rawValue, error: error)
        do {
            try service.recorder.recordRequest(row)
        } catch {
            service.logger.error("cannot record timing row: \(error)")
        }
    }
}

/// A generator's error for an adapter whose file vanished between the check and the swap.
public struct AdapterMissingError: Error, CustomStringConvertible {
    public var name: String
    public init(name: String) { self.name = name }
    public var description: String { "no adapter named '\(name)'" }
}

extension GenerationError {
    /// The request field the error is about.
    var field: String {
        switch self {
        case .invalidSize(let field, _, _): return field
        case .stepsOutOfRange: return "steps"
        case .invalidGuidance: return "guidance"
        case .invalidClipSkip: return "clip_skip"
        case .noScheduler: return "scheduler"
        case .cancelled: return ""
        }
    }
}

extension HTTPField.Name {
    static let xSeed = Self("X-Seed")!
    static let xQueueMs = Self("X-Queue-Ms")!
    static let xSwapMs = Self("X-Swap-Ms")!
    static let xInferenceMs = Self("X-Inference-Ms")!
    static let xAdapterCache = Self("X-Adapter-Cache")!
}

/// 1 -> "1", 0.8 -> "0.8" (Float's shortest form).
func formatScale(_ scale: Float) -> String {
    scale == scale.rounded() && abs(scale) < 1e6 ? String(Int(scale)) : "\(scale)"
}
