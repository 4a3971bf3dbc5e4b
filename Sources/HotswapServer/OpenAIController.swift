// OpenAI's images API, as the `openai` package speaks it: POST /v1/images/generations and
// GET /v1/models[/{model}]. Each adapter is "a model" to the client (as on the Hugging Face Hub),
// and so is the base. Errors have OpenAI's shape (APIError.Dialect.openAI).
// Reference: https://platform.openai.com/docs/api-reference/images/create
import Foundation
import HTTPTypes
import HotswapLoRA
import HotswapModels
import HotswapPipeline
import Hummingbird
import NIOCore

struct OpenAIController<Context: RequestContext>: Sendable {
    let service: ImageService

    func addRoutes(to router: Router<Context>) {
        router.post("/v1/images/generations") { request, context in try await self.generate(request: request, context: context) }
        router.get("/v1/models") { _, _ in try jsonResponse(ModelList(data: try self.models())) }
        router.get("/v1/models/:model") { _, context in
            let id = context.parameters.get("model") ?? ""
            guard let model = try self.models().first(where: { $0.id == id }) else { throw self.modelNotFound(id) }
            return try jsonResponse(model)
        }
    }

    struct Model: Encodable {
        var id: String
        var object = "model"
        var created: Int
        var owned_by = "hotswap"
    }

    struct ModelList: Encodable {
        var object = "list"
        var data: [Model]
    }

    /// The base model, then every adapter, by name.
    func models() throws -> [Model] {
        let base = service.warmup
        var models = [Model(id: baseID, created: Int(base?.startedAt.timeIntervalSince1970 ?? 0))]
        for adapter in try service.generator.listAdapters() where adapter.format != "invalid" && adapter.name != baseID {
            let url = service.configuration.adaptersDirectory.appendingPathComponent(adapter.name + ".safetensors")
            let modified = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date
            models.append(Model(id: adapter.name, created: Int(modified?.timeIntervalSince1970 ?? 0)))
        }
        return models
    }

    /// The base model's id: its folder name.
    var baseID: String { service.warmup?.model ?? "base" }

    func modelNotFound(_ name: String) -> APIError {
        APIError(.notFound, code: "model_not_found",
                 message: "The model '\(name.prefix(80))' does not exist: use '\(baseID)' or the name of an adapter (GET /v1/models)",
                 field: "model")
    }

    // MARK: POST /v1/images/generations

    /// Fields OpenAI defines, plus the extra body fields a client sends with `extra_body=`.
    static var knownFields: Set<String> { [
        "prompt", "model", "n", "size", "response_format", "quality", "style", "user", "background", "output_format",
        "output_compression", "moderation", "stream", "partial_images",
        "seed", "steps", "guidance", "negative_prompt", "scheduler", "clip_skip",
    ] }
    static var maxImages: Int { 10 }

    struct Parsed {
        var template: GenerationRequest
        var count: Int
        var wantsURL: Bool
    }

    /// The body as OpenAI defines it; the hints we have no use for (quality, style, user,
    /// moderation) are accepted and ignored, what we cannot do (a transparent background, JPEG,
    /// streaming) is refused naming the field.
    func parse(_ data: Data) throws -> Parsed {
        typealias F = ImageRequestBody
        let fields = try F.object(data)
        if let unknown = fields.keys.sorted().first(where: { !Self.knownFields.contains($0) }) {
            throw APIError.invalidField(unknown, "Unrecognized request argument supplied: \(unknown.prefix(64))")
        }
        guard let promptValue = F.present(fields["prompt"]) else { throw APIError.invalidField("prompt", "prompt is required") }
        var request = GenerationRequest(prompt: try F.string(promptValue, field: "prompt"))
        if let value = F.present(fields["model"]) {
            let name = try F.string(value, field: "model")
            if name != baseID {
                // Whether the file exists is the validator's check (prepare); a 404 there becomes model_not_found.
                guard AdapterName.isValid(name) else { throw modelNotFound(name) }
                request.adapters = [AdapterSpec(name: name)]
            }
        }
        var count = 1
        if let value = F.present(fields["n"]) {
            count = try F.integer(value, field: "n")
            guard (1...Self.maxImages).contains(count) else {
                throw APIError.invalidField("n", "n must be in 1...\(Self.maxImages), got \(count)")
            }
        }
        if let value = F.present(fields["size"]) {
            let size = try F.string(value, field: "size")
            if size != "auto" {
                let parts = size.split(separator: "x", omittingEmptySubsequences: false)
                guard parts.count == 2, let width = Int(parts[0]), let height = Int(parts[1]), width > 0, height > 0 else {
                    throw APIError.invalidField("size", "size must be \"WIDTHxHEIGHT\" (e.g. \"512x512\") or \"auto\", got '\(size.prefix(32))'")
                }
                request.width = width
                request.height = height
            }
        }
        var wantsURL = false
        if let value = F.present(fields["response_format"]) {
            switch try F.string(value, field: "response_format") {
            case "b64_json": wantsURL = false
            case "url": wantsURL = true
            case let other: throw APIError.invalidField("response_format", "response_format must be b64_json or url, got '\(other.prefix(32))'")
            }
        }
        for name in ["quality", "style", "user", "moderation"] {
            if let value = F.present(fields[name]) { _ = try F.string(value, field: name) }
        }
        if let value = F.present(fields["background"]), try F.string(value, field: "background") == "transparent" {
            throw APIError(.unprocessableContent, code: "unsupported", message: "background \"transparent\" is not supported: images are opaque RGB PNGs", field: "background")
        }
        if let value = F.present(fields["output_format"]), try F.string(value, field: "output_format") != "png" {
            throw APIError(.unprocessableContent, code: "unsupported", message: "output_format must be png: only PNG is written", field: "output_format")
        }
        if let value = F.present(fields["output_compression"]) { _ = try F.integer(value, field: "output_compression") }
        if let value = F.present(fields["stream"]), try F.bool(value, field: "stream") {
            throw APIError(.unprocessableContent, code: "unsupported", message: "stream is not supported; poll GET /v1/jobs/{id} for progress", field: "stream")
        }
        if let value = F.present(fields["partial_images"]), try F.integer(value, field: "partial_images") != 0 {
            throw APIError(.unprocessableContent, code: "unsupported", message: "partial_images is not supported", field: "partial_images")
        }
        request.negativePrompt = try fields["negative_prompt"].flatMap { try F.optionalString($0, field: "negative_prompt") }
        if let value = F.present(fields["seed"]) { request.seed = try F.seed(value, field: "seed") }
        if let value = F.present(fields["steps"]) { request.steps = try F.integer(value, field: "steps") }
        if let value = F.present(fields["guidance"]) { request.guidance = Float(try F.number(value, field: "guidance")) }
        if let value = F.present(fields["scheduler"]) { request.scheduler = try F.scheduler(value, field: "scheduler") }
        if let value = F.present(fields["clip_skip"]) { request.clipSkip = try F.integer(value, field: "clip_skip") }
        return Parsed(template: request, count: count, wantsURL: wantsURL)
    }

    struct ImagesResponse: Encodable {
        struct Image: Encodable {
            var b64_json: String?
            var url: String?
            var revised_prompt: String
        }
        var created: Int
        var data: [Image]
        var size: String
        var output_format = "png"
    }

    func generate(request: Request, context: Context) async throws -> Response {
        var request = request
        let logger = context.logger
        let query = request.uri.queryParameters.get("adapter")
        let parsed = try await service.readBody(&request, context: context) { data in
            var parsed = try parse(data)
            parsed.template.adapters = try ImageRequestBody.merge(queryAdapter: query, into: parsed.template.adapters)
            return parsed
        }
        // Image i uses seed + i, as A1111 seeds a batch.
        var images: [ResolvedRequest] = []
        for i in 0..<parsed.count {
            var one = parsed.template
            one.seed = parsed.template.seed &+ UInt64(i)
            do {
                images.append(try service.prepare(one, logger: logger))
            } catch var error as APIError {
                // The size is one field here.
                if error.field == "width" || error.field == "height" { error.field = "size" }
                if error.code == "adapter_not_found" { error = modelNotFound(parsed.template.adapters.first?.name ?? "") }
                throw error
            }
        }
        let output = try await service.runJob(RenderJob(api: .openai, images: images), request: request, context: context,
                                              keepsImages: parsed.wantsURL)
        let host = request.head.authority ?? "\(service.configuration.host):\(service.configuration.port)"
        let scheme = request.headers[HTTPField.Name("X-Forwarded-Proto")!] ?? "http"
        let status = service.jobs.status(output.id)
        let data = try output.requireImages().enumerated().map { i, image in
            parsed.wantsURL
                ? ImagesResponse.Image(url: "\(scheme)://\(host)" + (status?.url("/v1/jobs/\(output.id)/image", ["index=\(i)"]) ?? ""),
                                       revised_prompt: parsed.template.prompt)
                : ImagesResponse.Image(b64_json: image.png.base64EncodedString(), revised_prompt: parsed.template.prompt)
        }
        let size = images.first.map { "\($0.width)x\($0.height)" } ?? ""
        var response = try jsonResponse(ImagesResponse(created: Int(Date().timeIntervalSince1970), data: data, size: size))
        response.headers[.xJobId] = output.id
        response.headers[.connection] = "close"
        return response
    }
}
