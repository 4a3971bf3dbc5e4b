// POST /v1/images: our own API. Parse, check, run the job (RenderJobs), answer a PNG or JSON;
// with ?async=true answer 202 at once and let the client poll GET /v1/jobs/{id}.
import Foundation
import HTTPTypes
import HotswapPipeline
import HotswapStore
import Hummingbird
import NIOCore

struct ImagesController<Context: RequestContext>: Sendable {
    let service: ImageService

    func addRoutes(to router: Router<Context>) {
        router.post("/v1/images") { request, context in
            try await self.create(request: request, context: context)
        }
    }

    func create(request: Request, context: Context) async throws -> Response {
        var request = request
        let logger = context.logger
        let detached = try Self.asyncFlag(request.uri.queryParameters.get("async"))
        // Parse and check (the engine's one validator, before the job waits in the queue).
        let query = request.uri.queryParameters.get("adapter")
        let parsed = try await service.readBody(&request, context: context) {
            try ImageRequestBody.parse($0, queryAdapter: query)
        }
        let resolved = try service.prepare(parsed, logger: logger)
        let job = RenderJob(api: .images, images: [resolved])

        if detached {
            let id = try service.submitDetached(job, request: request, context: context)
            let status = service.jobs.status(id)
            var response = try jsonResponse(status, status: .accepted)
            response.headers[.location] = status?.url("/v1/jobs/\(id)") ?? "/v1/jobs/\(id)"
            response.headers[.xJobId] = id
            return response
        }

        let output = try await service.runJob(job, request: request, context: context)
        let image = try output.requireImages()[0]
        let record = output.records[0]
        let swap = record.swap ?? SwapReport(cache: .none)
        let inferenceMs = record.generation?.inferenceMs ?? 0
        var headers: HTTPFields = [
            .xJobId: output.id,
            .xSeed: String(image.seed),
            .xQueueMs: format(output.queueMs),
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
                timings: .init(queue_ms: output.queueMs, swap_ms: swap.totalMs, unload_ms: swap.unloadMs,
                               load_ms: swap.loadMs, apply_ms: swap.applyMs, text_encode_ms: generation.textEncodeMs,
                               denoise_ms: generation.denoiseMs, decode_ms: generation.decodeMs,
                               inference_ms: inferenceMs, total_ms: record.totalMs ?? 0))
            var response = try jsonResponse(payload)
            response.headers.append(contentsOf: headers)
            return response
        }
        headers[.contentType] = "image/png"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: image.png)))
    }

    /// `?async=true|false|1|0` (absent: false).
    static func asyncFlag(_ text: String?) throws -> Bool {
        switch text?.lowercased() {
        case nil, "false", "0": return false
        case "true", "1", "": return true
        case let other?:
            throw APIError.invalidField("async", "async must be true or false, got '\(other.prefix(32))'")
        }
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
    static let xJobId = Self("X-Job-Id")!
    static let xSeed = Self("X-Seed")!
    static let xQueueMs = Self("X-Queue-Ms")!
    static let xSwapMs = Self("X-Swap-Ms")!
    static let xInferenceMs = Self("X-Inference-Ms")!
    static let xAdapterCache = Self("X-Adapter-Cache")!
}
