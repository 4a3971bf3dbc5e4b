// AUTOMATIC1111's web UI API (/sdapi/v1), the subset that image clients (the `webuiapi` package,
// Krita/Photoshop plug-ins, chat front-ends) use to render txt2img with LoRAs and watch progress.
// Shapes from stable-diffusion-webui modules/api/api.py and models.py; errors have A1111's shape
// (APIError.Dialect.a1111). Rendering goes through RenderJobs like every other route.
import Foundation
import HTTPTypes
import HotswapModels
import HotswapPipeline
import Hummingbird
import NIOCore

struct A1111Controller<Context: RequestContext>: Sendable {
    let service: ImageService

    func addRoutes(to router: Router<Context>) {
        router.post("/sdapi/v1/txt2img") { request, context in try await self.txt2img(request: request, context: context) }
        router.get("/sdapi/v1/progress") { _, _ in try jsonResponse(self.progress()) }
        router.post("/sdapi/v1/interrupt") { _, _ in
            service.jobs.interruptRunning()
            return try jsonResponse([String: String]())
        }
        router.get("/sdapi/v1/loras") { _, _ in try jsonResponse(try self.loras()) }
        router.get("/sdapi/v1/sd-models") { _, _ in try jsonResponse([self.checkpoint]) }
        router.get("/sdapi/v1/samplers") { _, _ in
            try jsonResponse(A1111Samplers.samplers.map { SamplerItem(name: $0.name, aliases: $0.aliases, options: $0.options) })
        }
        router.get("/sdapi/v1/schedulers") { _, _ in
            try jsonResponse(A1111Samplers.schedules.map { SchedulerItem(name: $0.name, label: $0.label, default_rho: $0.rho) })
        }
        router.get("/sdapi/v1/options") { _, _ in try jsonResponse(self.options) }
        router.get("/sdapi/v1/scripts") { _, _ in try jsonResponse(["txt2img": [String](), "img2img": [String]()]) }
    }

    var modelName: String { service.warmup?.model ?? "" }

    // MARK: POST /sdapi/v1/txt2img

    func txt2img(request: Request, context: Context) async throws -> Response {
        var request = request
        let logger = context.logger
        let query = request.uri.queryParameters.get("adapter")
        let parsed = try await service.readBody(&request, context: context) { data in
            var parsed = try A1111Request.parse(data, modelName: modelName)
            parsed.template.adapters = try ImageRequestBody.merge(queryAdapter: query, into: parsed.template.adapters)
            return parsed
        }
        // The adapters come from the prompt's tags: one that is not there is a 404 naming it as written.
        // (A stat, not a parse: whether the file fits is the validator's check.)
        let directory = service.configuration.adaptersDirectory
        for adapter in parsed.template.adapters
            where !(AdapterName.fileURL(for: adapter.name, in: directory).map { FileManager.default.fileExists(atPath: $0.path) } ?? false) {
            throw service.refuse(APIError(.notFound, code: "adapter_not_found",
                                          message: "no LoRA named '\(adapter.name.prefix(80))' (from <lora:\(adapter.name.prefix(80)):...> in the prompt); GET /sdapi/v1/loras lists them",
                                          field: "prompt"), .notFound, logger: logger)
        }
        var images: [ResolvedRequest] = []
        for one in parsed.images {
            do {
                images.append(try service.prepare(one, logger: logger))
            } catch var error as APIError {
                // Our field names, as A1111's.
                if error.field?.hasPrefix("adapters") == true || error.field == "adapter" {
                    error.field = "prompt"
                } else if error.field == "guidance" {
                    error.field = "cfg_scale"
                } else if error.field == "clip_skip" {
                    error.field = "override_settings.CLIP_stop_at_last_layers"
                }
                throw error
            }
        }
        let output = try await service.runJob(RenderJob(api: .a1111, images: images), request: request, context: context)

        let first = images.first
        let infotexts = output.images.map(\.infotext)
        let seeds = output.images.map { Int64(bitPattern: $0.seed) }
        let allSeeds = parsed.seeds.map { Int64(bitPattern: $0) }
        let template = parsed.template
        let info = Info(
            prompt: template.writtenPrompt ?? template.prompt,
            all_prompts: Array(repeating: template.writtenPrompt ?? template.prompt, count: allSeeds.count),
            negative_prompt: template.negativePrompt ?? "",
            all_negative_prompts: Array(repeating: template.negativePrompt ?? "", count: allSeeds.count),
            seed: seeds.first ?? allSeeds.first ?? 0, all_seeds: allSeeds,
            subseed: parsed.subseed, all_subseeds: (0..<Int64(allSeeds.count)).map { parsed.subseed == -1 ? -1 : parsed.subseed + $0 },
            width: first?.width ?? 0, height: first?.height ?? 0, sampler_name: parsed.samplerName,
            cfg_scale: Double(template.guidance), steps: template.steps, batch_size: parsed.batchSize,
            sd_model_name: modelName, infotexts: infotexts,
            job_timestamp: Self.timestamp(), clip_skip: (template.clipSkip ?? 0) + 1,
            extra_generation_params: parsed.scheduleType.map { ["Schedule type": $0] } ?? [:],
            interrupted: output.interrupted)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let infoText = String(decoding: try encoder.encode(info), as: UTF8.self)
        let imagesJSON = parsed.sendImages ? output.images.map { JSONWriter.quote($0.png.base64EncodedString()) } : []
        let body = "{\"images\":[\(imagesJSON.joined(separator: ","))],\"parameters\":\(JSONWriter.write(.object(parsed.parameters))),\"info\":\(JSONWriter.quote(infoText))}"
        return Response(status: .ok, headers: [.contentType: "application/json", .xJobId: output.id, .connection: "close"],
                        body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// `Processed.js()` (modules/processing.py), the keys we can fill truthfully.
    struct Info: Encodable {
        var prompt: String
        var all_prompts: [String]
        var negative_prompt: String
        var all_negative_prompts: [String]
        var seed: Int64
        var all_seeds: [Int64]
        var subseed: Int64
        var all_subseeds: [Int64]
        var subseed_strength = 0
        var width: Int
        var height: Int
        var sampler_name: String
        var cfg_scale: Double
        var steps: Int
        var batch_size: Int
        var restore_faces = false
        var sd_model_name: String
        var seed_resize_from_w = -1
        var seed_resize_from_h = -1
        var infotexts: [String]
        var styles: [String] = []
        var job_timestamp: String
        var clip_skip: Int
        var extra_generation_params: [String: String]
        var index_of_first_image = 0
        var is_using_inpainting_conditioning = false
        var version = Infotext.hotswapVersion
        /// POST /sdapi/v1/interrupt stopped the job: `images` are those finished before.
        var interrupted: Bool
    }

    static func timestamp() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMddHHmmss"
        return formatter.string(from: Date())
    }

    // MARK: GET /sdapi/v1/progress

    struct Progress: Encodable {
        struct State: Encodable {
            var skipped = false
            var interrupted: Bool
            var stopping_generation = false
            var job: String
            var job_count: Int
            var job_timestamp: String
            var job_no: Int
            var sampling_step: Int
            var sampling_steps: Int
        }
        var progress: Double
        var eta_relative: Double
        var state: State
        var current_image: String?
        var textinfo: String?

        enum CodingKeys: String, CodingKey { case progress, eta_relative, state, current_image, textinfo }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(progress, forKey: .progress)
            try c.encode(eta_relative, forKey: .eta_relative)
            try c.encode(state, forKey: .state)
            try c.encode(current_image, forKey: .current_image)     // null, as A1111 without a preview
            try c.encode(textinfo, forKey: .textinfo)
        }
    }

    /// The running job (of any API), as A1111's progress: 0.01 + job_no/job_count +
    /// step/steps/job_count, and eta_relative = elapsed/progress - elapsed. `skip_current_image`
    /// is honoured trivially: no preview image is ever sent.
    func progress() -> Progress {
        guard let job = service.jobs.running else {
            return Progress(progress: 0, eta_relative: 0,
                            state: .init(interrupted: false, job: "", job_count: 0, job_timestamp: "0", job_no: 0,
                                         sampling_step: 0, sampling_steps: 0))
        }
        let count = max(job.images, 1)
        let fraction = min(1, 0.01 + Double(job.imagesDone) / Double(count)
                              + Double(job.step) / Double(max(job.steps, 1)) / Double(count))
        let elapsed = Date().timeIntervalSince(job.startedAt ?? job.createdAt)
        return Progress(progress: fraction, eta_relative: max(0, elapsed / fraction - elapsed),
                        state: .init(interrupted: service.jobs.wasInterrupted(job.id), job: job.id, job_count: count,
                                     job_timestamp: Self.timestamp(), job_no: job.imagesDone,
                                     sampling_step: job.step, sampling_steps: job.steps))
    }

    // MARK: Listings

    struct Lora: Encodable {
        var name: String
        var alias: String
        var path: String
        var metadata: [String: String]
    }

    /// Every usable adapter; `alias` is kohya's ss_output_name when the file has one (as A1111).
    func loras() throws -> [Lora] {
        try service.generator.listAdapters().filter { $0.format != "invalid" }.map { adapter in
            var metadata = service.generator.adapterMetadata(named: adapter.name) ?? [:]
            metadata["ssmd_cover_images"] = nil
            return Lora(name: adapter.name, alias: metadata["ss_output_name"] ?? adapter.name,
                        path: adapter.name + ".safetensors", metadata: metadata)
        }
    }

    struct Checkpoint: Encodable {
        var title: String
        var model_name: String
        var hash: String?
        var sha256: String?
        var filename: String
        var config: String?

        enum CodingKeys: String, CodingKey { case title, model_name, hash, sha256, filename, config }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(title, forKey: .title)
            try c.encode(model_name, forKey: .model_name)
            try c.encode(hash, forKey: .hash)           // null: a diffusers folder has no checkpoint hash
            try c.encode(sha256, forKey: .sha256)
            try c.encode(filename, forKey: .filename)
            try c.encode(config, forKey: .config)
        }
    }

    var checkpoint: Checkpoint {
        Checkpoint(title: modelName, model_name: modelName, filename: modelName)
    }

    struct SamplerItem: Encodable {
        var name: String
        var aliases: [String]
        var options: [String: String]
    }

    struct SchedulerItem: Encodable {
        var name: String
        var label: String
        var aliases: [String]? = nil
        var default_rho: Double
        var need_inner_model = false
    }

    struct Options: Encodable {
        var sd_model_checkpoint: String
        var CLIP_stop_at_last_layers = 1
        var samples_format = "png"
        var eta_ancestral = 1.0
        var eta_ddim = 0.0
    }

    /// The settings this server has, as A1111 names them (read-only: POST /sdapi/v1/options is not served).
    var options: Options { Options(sd_model_checkpoint: modelName) }
}
