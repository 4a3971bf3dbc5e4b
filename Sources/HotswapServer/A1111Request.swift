// POST /sdapi/v1/txt2img's body, as AUTOMATIC1111's API defines it (stable-diffusion-webui
// modules/api/models.py StableDiffusionTxt2ImgProcessingAPI, built from modules/processing.py
// StableDiffusionProcessingTxt2Img): field names, types and defaults as there. What we implement is
// mapped onto a GenerationRequest; a field we do not implement is accepted at its off/default value
// (what `webuiapi` and other clients send by default) and refused with a 422 naming it when it asks
// for something we cannot do. Unknown field names are refused too (A1111's pydantic model would
// drop them silently).
import Foundation
import HotswapLoRA
import HotswapModels
import HotswapPipeline

struct A1111Request {
    /// One image's request per entry of `seeds` (batch_size x n_iter), all alike but the seed.
    var template: GenerationRequest
    var seeds: [UInt64]
    /// The seed as sent (-1: random), echoed in `parameters` as A1111 does.
    var parameters: [(key: String, value: JSONValue)]
    var samplerName: String
    var scheduleType: String?
    var batchSize: Int
    var sendImages: Bool
    var subseed: Int64

    typealias F = ImageRequestBody

    /// Fields we read; every other A1111 field is checked against its off value below.
    static let implemented: Set<String> = [
        "prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height", "sampler_name", "sampler_index",
        "scheduler", "batch_size", "n_iter", "override_settings", "override_settings_restore_afterwards", "send_images",
        "disable_extra_networks", "subseed",
    ]

    /// A1111 fields that do nothing here at these values (anything else is a 422 naming the field).
    /// A nil value means any value is fine: the field only matters when another one turns it on.
    static let offValues: [String: (allowed: [JSONValue], why: String)] = [
        "styles": ([.array([])], "prompt styles are not supported"),
        "subseed_strength": ([.number("0"), .number("0.0")], "variation seeds are not supported"),
        "seed_resize_from_h": ([.number("-1"), .number("0")], "seed resizing is not supported"),
        "seed_resize_from_w": ([.number("-1"), .number("0")], "seed resizing is not supported"),
        "restore_faces": ([.bool(false)], "face restoration is not supported"),
        "tiling": ([.bool(false)], "tiling is not supported"),
        "save_images": ([.bool(false)], "images are not saved on the server; they are returned"),
        "enable_hr": ([.bool(false)], "hires fix is not supported"),
        "refiner_checkpoint": ([.string(""), .string("None")], "refiners are not supported"),
        "script_name": ([.string(""), .string("None")], "scripts are not supported"),
        "alwayson_scripts": ([.object([])], "scripts are not supported"),
        "firstpass_image": ([.string("")], "a first-pass image is not supported"),
        "infotext": ([.string("")], "reading parameters from an infotext is not supported"),
        "s_churn": ([.number("0"), .number("0.0")], "s_churn is not supported"),
        "s_tmin": ([.number("0"), .number("0.0")], "s_tmin is not supported"),
        "s_tmax": ([.number("0"), .number("0.0")], "s_tmax is not supported"),
        "s_noise": ([.number("1"), .number("1.0")], "s_noise is not supported"),
        "s_min_uncond": ([.number("0"), .number("0.0")], "s_min_uncond is not supported"),
    ]
    /// Fields accepted with any value: they only act together with a field refused above (hires
    /// fix, refiner, scripts), or they are bookkeeping.
    static let ignored: Set<String> = [
        "denoising_strength", "firstphase_width", "firstphase_height", "hr_scale", "hr_upscaler", "hr_second_pass_steps",
        "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler", "hr_prompt",
        "hr_negative_prompt", "refiner_switch_at", "script_args", "do_not_save_samples", "do_not_save_grid", "comments",
        "force_task_id", "eta",
    ]
    /// override_settings keys we honour.
    static let overrideKeys: Set<String> = ["CLIP_stop_at_last_layers", "sd_model_checkpoint"]
    static let maxImages = 16

    /// `modelName`: ours, which `override_settings.sd_model_checkpoint` may name (nothing else).
    static func parse(_ data: Data, modelName: String) throws -> A1111Request {
        let members = try F.members(data)
        let fields = Dictionary(uniqueKeysWithValues: members.map { ($0.key, $0.value) })
        for key in fields.keys.sorted() where !implemented.contains(key) && !ignored.contains(key) {
            guard let rule = offValues[key] else {
                throw APIError(.unprocessableContent, code: "unknown_field", message: "unknown field '\(key.prefix(64))'", field: String(key.prefix(64)))
            }
            let value = fields[key]!
            if value != .null, !rule.allowed.contains(where: { sameValue($0, value) }) {
                throw APIError(.unprocessableContent, code: "unsupported", message: "\(key) = \(value.brief): \(rule.why)", field: key)
            }
        }

        // The prompt: <lora:NAME:WEIGHT> tags become adapters, removed from the encoded text and kept
        // in the infotext (A1111 keeps them there too).
        let written = try F.present(fields["prompt"]).map { try F.string($0, field: "prompt") } ?? ""
        var disableTags = false
        if let value = F.present(fields["disable_extra_networks"]) { disableTags = try F.bool(value, field: "disable_extra_networks") }
        let tags = try PromptTags.extract(written)
        var request = GenerationRequest(prompt: tags.prompt, adapters: disableTags ? [] : tags.adapters)
        if tags.prompt != written { request.writtenPrompt = written }
        request.negativePrompt = try fields["negative_prompt"].flatMap { try F.optionalString($0, field: "negative_prompt") }
        request.steps = try F.present(fields["steps"]).map { try F.integer($0, field: "steps") } ?? 50
        request.guidance = Float(try F.present(fields["cfg_scale"]).map { try F.number($0, field: "cfg_scale") } ?? 7)
        // A1111's default is 512x512, SD1.x's native size; absent, we use the model's own.
        request.width = try F.present(fields["width"]).map { try F.integer($0, field: "width") }
        request.height = try F.present(fields["height"]).map { try F.integer($0, field: "height") }

        // Sampler and schedule type.
        let samplerText = try F.present(fields["sampler_name"]).map { try F.string($0, field: "sampler_name") }
            ?? F.present(fields["sampler_index"]).map { try F.string($0, field: "sampler_index") } ?? "Euler"
        let scheduleText = try F.present(fields["scheduler"]).map { try F.string($0, field: "scheduler") }
        let sampler = try A1111Samplers.resolve(sampler: samplerText, schedule: scheduleText)
        request.scheduler = sampler.scheduler
        if let value = F.present(fields["eta"]), let eta = value.double {
            if sampler.scheduler == .ddim && eta != 0 {
                throw APIError(.unprocessableContent, code: "unsupported", message: "eta = \(value.brief) with DDIM: only eta 0 (deterministic DDIM) is supported", field: "eta")
            }
            if sampler.scheduler == .eulerAncestral && eta != 1 {
                throw APIError(.unprocessableContent, code: "unsupported", message: "eta = \(value.brief) with Euler a: only eta 1 is supported", field: "eta")
            }
        }

        // override_settings: clip skip (A1111 counts the last layer as 1) and our own checkpoint.
        if let value = F.present(fields["override_settings"]) {
            guard let settings = value.objectMembers else {
                throw APIError.invalidField("override_settings", "override_settings must be an object, got \(value.kindName)")
            }
            for (key, setting) in settings where setting != .null {
                switch key {
                case "CLIP_stop_at_last_layers":
                    let layers = try F.integer(setting, field: "override_settings.CLIP_stop_at_last_layers")
                    guard layers >= 1 else {
                        throw APIError.invalidField("override_settings.CLIP_stop_at_last_layers", "CLIP_stop_at_last_layers must be at least 1, got \(layers)")
                    }
                    request.clipSkip = layers > 1 ? layers - 1 : nil
                case "sd_model_checkpoint":
                    let name = try F.string(setting, field: "override_settings.sd_model_checkpoint")
                    guard name == modelName || name.hasPrefix(modelName + " [") || name == modelName + ".safetensors" else {
                        throw APIError(.unprocessableContent, code: "unsupported",
                                       message: "sd_model_checkpoint '\(name.prefix(80))': this server serves only '\(modelName)'",
                                       field: "override_settings.sd_model_checkpoint")
                    }
                default:
                    throw APIError(.unprocessableContent, code: "unsupported",
                                   message: "override_settings.\(key.prefix(64)) is not supported (only \(overrideKeys.sorted().joined(separator: ", ")))",
                                   field: "override_settings.\(key.prefix(64))")
                }
            }
        }
        if let value = F.present(fields["override_settings_restore_afterwards"]) { _ = try F.bool(value, field: "override_settings_restore_afterwards") }

        // Seeds: -1 is random (A1111: random.randrange(4294967294)); image i of the batch gets seed + i.
        var seed: UInt64 = UInt64.random(in: 0..<4_294_967_294)
        if let value = F.present(fields["seed"]), value.int64 != -1 {
            seed = try F.seed(value, field: "seed")
        }
        var subseed: Int64 = -1
        if let value = F.present(fields["subseed"]) {
            guard let number = value.int64 else { throw APIError.invalidField("subseed", "subseed must be an integer, got \(value.brief)") }
            subseed = number
        }
        let batchSize = try F.present(fields["batch_size"]).map { try F.integer($0, field: "batch_size") } ?? 1
        let iterations = try F.present(fields["n_iter"]).map { try F.integer($0, field: "n_iter") } ?? 1
        // Each bounded first, so the product cannot overflow.
        guard (1...maxImages).contains(batchSize), (1...maxImages).contains(iterations), batchSize * iterations <= maxImages else {
            throw APIError.invalidField(batchSize < 1 ? "batch_size" : "n_iter",
                                        "batch_size x n_iter must be in 1...\(maxImages), got \(batchSize) x \(iterations)")
        }
        request.seed = seed
        let seeds = (0..<(batchSize * iterations)).map { seed &+ UInt64($0) }
        var sendImages = true
        if let value = F.present(fields["send_images"]) { sendImages = try F.bool(value, field: "send_images") }

        return A1111Request(template: request, seeds: seeds, parameters: members, samplerName: sampler.name,
                            scheduleType: sampler.scheduleLabel, batchSize: batchSize, sendImages: sendImages, subseed: subseed)
    }

    /// JSON equality by value (0 and 0.0 alike).
    static func sameValue(_ a: JSONValue, _ b: JSONValue) -> Bool {
        if case .number = a, case .number = b { return a.double == b.double }
        return a == b
    }

    /// The per-image requests.
    var images: [GenerationRequest] {
        seeds.map { seed in
            var one = template
            one.seed = seed
            return one
        }
    }
}

/// A1111's samplers and schedule types that map onto our schedulers
/// (modules/sd_samplers_kdiffusion.py, sd_samplers_timesteps.py, sd_samplers_lcm.py, sd_schedulers.py).
enum A1111Samplers {
    struct Sampler {
        var name: String
        var aliases: [String]
        /// A1111's `options` (DPM++ 2M defaults to the Karras schedule).
        var options: [String: String]
        /// Our scheduler for each schedule type name this sampler accepts ("automatic" = its default).
        var schedules: [String: SchedulerName]
    }

    static let samplers: [Sampler] = [
        Sampler(name: "Euler a", aliases: ["k_euler_a", "k_euler_ancestral"], options: ["uses_ensd": "True"],
                schedules: ["automatic": .eulerAncestral]),
        Sampler(name: "Euler", aliases: ["k_euler"], options: [:], schedules: ["automatic": .euler]),
        Sampler(name: "DPM++ 2M", aliases: ["k_dpmpp_2m"], options: ["scheduler": "karras"],
                schedules: ["automatic": .dpmpp2mKarras, "karras": .dpmpp2mKarras, "uniform": .dpmpp2m]),
        Sampler(name: "DDIM", aliases: ["ddim"], options: [:], schedules: ["automatic": .ddim]),
        Sampler(name: "PLMS", aliases: ["plms"], options: [:], schedules: ["automatic": .pndm]),
        Sampler(name: "LCM", aliases: ["k_lcm"], options: [:], schedules: ["automatic": .lcm]),
    ]

    /// (name, label) of the schedule types any sampler here accepts.
    static let schedules: [(name: String, label: String, rho: Double)] = [
        ("automatic", "Automatic", -1), ("uniform", "Uniform", -1), ("karras", "Karras", 7),
    ]
    /// Every A1111 schedule type, to tell "unknown" from "not with this sampler".
    static let allScheduleNames: [String: String] = [
        "automatic": "Automatic", "uniform": "Uniform", "karras": "Karras", "exponential": "Exponential",
        "polyexponential": "Polyexponential", "sgm_uniform": "SGM Uniform", "kl_optimal": "KL Optimal",
        "align_your_steps": "Align Your Steps", "simple": "Simple", "normal": "Normal", "ddim": "DDIM", "beta": "Beta",
    ]

    struct Resolved {
        var name: String
        var scheduler: SchedulerName
        /// The infotext's "Schedule type" (nil for Automatic on samplers without a schedule).
        var scheduleLabel: String?
    }

    /// A schedule type by name or label ("karras" or "Karras"; "SGMUniform" too).
    static func scheduleName(_ text: String) -> String? {
        let folded = text.lowercased()
        if folded == "sgmuniform" { return "sgm_uniform" }
        return allScheduleNames.first { $0.key == folded || $0.value.lowercased() == folded }?.key
    }

    /// A sampler by name or alias; "DPM++ 2M Karras" (the name before 1.9) is DPM++ 2M with the
    /// Karras schedule, as A1111 strips a schedule suffix.
    static func resolve(sampler text: String, schedule: String?) throws -> Resolved {
        var samplerText = text.trimmingCharacters(in: .whitespaces)
        var scheduleKey = "automatic"
        if let schedule, !schedule.isEmpty {
            guard let key = scheduleName(schedule) else {
                throw APIError(.unprocessableContent, code: "unknown_scheduler",
                               message: "unknown scheduler '\(schedule.prefix(64))'; A1111's are \(allScheduleNames.values.sorted().joined(separator: ", "))",
                               field: "scheduler")
            }
            scheduleKey = key
        }
        func find(_ name: String) -> Sampler? {
            samplers.first { $0.name.lowercased() == name.lowercased() || $0.aliases.contains(name.lowercased()) }
        }
        var found = find(samplerText)
        if found == nil, let space = samplerText.lastIndex(of: " "), let key = scheduleName(String(samplerText[samplerText.index(after: space)...])) {
            samplerText = String(samplerText[..<space])
            found = find(samplerText)
            scheduleKey = key
        }
        guard let sampler = found else {
            throw APIError(.unprocessableContent, code: "unknown_sampler",
                           message: "sampler '\(text.prefix(64))' is not available; choose one of \(samplers.map(\.name).joined(separator: ", "))",
                           field: "sampler_name")
        }
        guard let scheduler = sampler.schedules[scheduleKey] else {
            throw APIError(.unprocessableContent, code: "unsupported",
                           message: "schedule type \(allScheduleNames[scheduleKey] ?? scheduleKey) is not available with \(sampler.name); use \(sampler.schedules.keys.sorted().map { allScheduleNames[$0] ?? $0 }.joined(separator: " or "))",
                           field: "scheduler")
        }
        let label: String? = scheduler == .dpmpp2mKarras ? "Karras" : (scheduler == .dpmpp2m ? "Uniform" : nil)
        return Resolved(name: sampler.name, scheduler: scheduler, scheduleLabel: label)
    }
}
