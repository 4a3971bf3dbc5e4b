import Foundation
import HTTPTypes
import HotswapLoRA
import HotswapPipeline
import HotswapStore
import HotswapTestSupport
import Hummingbird
import HummingbirdTesting
import Testing
@testable import HotswapServer

/// The A1111 and OpenAI routes and /v1/jobs against the fake engine: every field mapping and error.
@Suite("Client APIs: A1111, OpenAI, jobs (fake generator)")
struct ClientAPITests {
    static let jobIdHeader = HTTPField.Name("X-Job-Id")!

    func object(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
    }

    /// A1111's `info`: JSON text inside the JSON answer.
    func info(_ body: [String: Any]) throws -> [String: Any] {
        let text = try #require(body["info"] as? String)
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    /// The body `webuiapi` 0.9.17 sends for `api.txt2img(prompt=...)` with its defaults.
    static func webuiapiPayload(_ prompt: String, extra: [String: Any] = [:]) -> [String: Any] {
        var payload: [String: Any] = [
            "enable_hr": false, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0, "hr_resize_x": 0,
            "hr_resize_y": 0, "hr_checkpoint_name": NSNull(), "hr_sampler_name": NSNull(), "hr_scheduler": NSNull(),
            "hr_prompt": "", "hr_negative_prompt": "", "denoising_strength": 0.7, "firstphase_width": 0,
            "firstphase_height": 0, "prompt": prompt, "styles": [String](), "seed": -1, "subseed": -1,
            "subseed_strength": 0.0, "seed_resize_from_h": 0, "seed_resize_from_w": 0, "batch_size": 1, "n_iter": 1,
            "steps": 20, "cfg_scale": 7.0, "width": 64, "height": 64, "restore_faces": false, "tiling": false,
            "do_not_save_samples": false, "do_not_save_grid": false, "negative_prompt": "", "eta": 1.0, "s_churn": 0,
            "s_tmax": 0, "s_tmin": 0, "s_noise": 1, "override_settings": [String: Any](),
            "override_settings_restore_afterwards": true, "sampler_name": "Euler a", "scheduler": "automatic",
            "sampler_index": "Euler a", "script_name": NSNull(), "script_args": [Any](), "send_images": true,
            "save_images": false, "alwayson_scripts": [String: Any](),
        ]
        for (key, value) in extra { payload[key] = value }
        return payload
    }

    // MARK: A1111

    @Test func a1111Txt2ImgMapsFieldsTagsAndSeeds() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let payload = Self.webuiapiPayload("a cat <lora:alpha:0.5>, sharp <lora:beta>", extra: [
                "seed": 100, "batch_size": 2, "n_iter": 2, "steps": 3, "cfg_scale": 5.5,
                "override_settings": ["CLIP_stop_at_last_layers": 2],
            ])
            let response = try await client.execute(uri: "/sdapi/v1/txt2img", method: .post, headers: jsonHeaders, body: json(payload))
            #expect(response.status == .ok, "\(String(buffer: response.body))")
            #expect(response.headers[Self.jobIdHeader] != nil)
            let body = try object(response)
            let images = try #require(body["images"] as? [String])
            #expect(images.count == 4)
            let png = try PNGReader.read(try #require(Data(base64Encoded: images[1])))
            #expect(png.width == 64 && png.height == 64)
            // The infotext keeps the tags, as A1111's does; the seeds go up by one per image.
            let infotext = try #require(png.text["parameters"])
            #expect(infotext.hasPrefix("a cat <lora:alpha:0.5>, sharp <lora:beta>"))
            #expect(infotext.contains("Seed: 101"))
            let info = try info(body)
            #expect(info["all_seeds"] as? [Int] == [100, 101, 102, 103])
            #expect(info["seed"] as? Int == 100)
            #expect(info["sampler_name"] as? String == "Euler a")
            #expect(info["clip_skip"] as? Int == 2)
            #expect((info["infotexts"] as? [String])?.count == 4)
            #expect((body["parameters"] as? [String: Any])?["seed"] as? Int == 100)

            // What the engine got: the tags out of the encoded text, as adapters with their weights.
            let jobs = harness.fake.jobs
            #expect(jobs.count == 4)
            let first = try #require(jobs.first)
            #expect(first.request.prompt == "a cat , sharp ")
            #expect(first.request.adapters == [AdapterSpec(name: "alpha", scale: 0.5), AdapterSpec(name: "beta", scale: 1)])
            #expect(first.request.steps == 3)
            #expect(first.request.guidance == 5.5)
            #expect(first.request.clipSkip == 1)
            #expect(first.scheduler == .eulerAncestral)
            #expect(jobs.map(\.request.seed) == [100, 101, 102, 103])

            // Every image is a timing row of the A1111 API.
            let rows = harness.requestRows
            #expect(rows.count == 4)
            #expect(rows.allSatisfy { $0.api == "a1111" && $0.outcome == "ok" })
        }
    }

    @Test func a1111RandomSeedSamplersAndSchedules() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let cases: [(sampler: String, scheduler: String?, expected: SchedulerName)] = [
                ("Euler a", "automatic", .eulerAncestral), ("Euler", nil, .euler), ("DPM++ 2M", "Karras", .dpmpp2mKarras),
                ("DPM++ 2M", "automatic", .dpmpp2mKarras), ("DPM++ 2M", "uniform", .dpmpp2m), ("DPM++ 2M Karras", nil, .dpmpp2mKarras),
                ("DDIM", nil, .ddim), ("PLMS", nil, .pndm), ("LCM", "Automatic", .lcm), ("k_euler_a", nil, .eulerAncestral),
            ]
            for (i, item) in cases.enumerated() {
                var body: [String: Any] = ["prompt": "x", "steps": 4, "sampler_name": item.sampler]
                if let scheduler = item.scheduler { body["scheduler"] = scheduler }
                let response = try await client.execute(uri: "/sdapi/v1/txt2img", method: .post, headers: jsonHeaders, body: json(body))
                #expect(response.status == .ok, "\(item): \(String(buffer: response.body))")
                #expect(harness.fake.jobs.count == i + 1)
                #expect(harness.fake.jobs.last?.scheduler == item.expected, "\(item)")
            }
            // No sampler: A1111's sampler_index default, Euler; no size: the model's; seed -1: random.
            let plain = try await client.execute(uri: "/sdapi/v1/txt2img", method: .post, headers: jsonHeaders,
                                                 body: json(["prompt": "x", "steps": 2, "seed": -1, "batch_size": 2]))
            #expect(plain.status == .ok)
            let jobs = harness.fake.jobs.suffix(2)
            #expect(jobs.first?.scheduler == .euler)
            #expect(jobs.first?.width == 64)
            let seeds = jobs.map(\.request.seed)
            #expect(seeds[seeds.startIndex] < 4_294_967_294 && seeds.last == seeds.first! + 1)
            // The default steps are A1111's 50.
            let defaults = try await client.execute(uri: "/sdapi/v1/txt2img", method: .post, headers: jsonHeaders, body: json(["prompt": "x"]))
            #expect(defaults.status == .ok)
            #expect(harness.fake.jobs.last?.request.steps == 50)
            #expect(harness.fake.jobs.last?.request.guidance == 7)
        }
    }

    @Test(arguments: [
        // (body, status, field, message fragment)
        (["prompt": "<lora:nope:1> x"], 404, "prompt", "nope"),
        (["prompt": "<lora:.upload-1.part:1> x"], 404, "prompt", ".upload-1.part"),
        (["prompt": "<lora:alpha.safetensors:1> x"], 404, "prompt", "alpha.safetensors"),
        (["prompt": "<lora:my lora:1> x"], 404, "prompt", "my lora"),
        (["prompt": "<lora:alpha:1:0.5> x"], 422, "prompt", "separate"),
        (["prompt": "<lora:alpha:heavy> x"], 422, "prompt", "not a number"),
        (["prompt": "<hypernet:h:1> x"], 422, "prompt", "hypernet"),
        (["prompt": "x", "sampler_name": "Heun"], 422, "sampler_name", "Heun"),
        (["prompt": "x", "sampler_name": "Euler", "scheduler": "karras"], 422, "scheduler", "Karras"),
        (["prompt": "x", "scheduler": "wobbly"], 422, "scheduler", "wobbly"),
        (["prompt": "x", "enable_hr": true], 422, "enable_hr", "hires"),
        (["prompt": "x", "restore_faces": true], 422, "restore_faces", "face"),
        (["prompt": "x", "alwayson_scripts": ["ControlNet": ["args": [1]]]], 422, "alwayson_scripts", "scripts"),
        (["prompt": "x", "styles": ["noir"]], 422, "styles", "styles"),
        (["prompt": "x", "subseed_strength": 0.3], 422, "subseed_strength", "variation"),
        (["prompt": "x", "sampler_name": "DDIM", "eta": 1.0], 422, "eta", "DDIM"),
        (["prompt": "x", "override_settings": ["sd_vae": "x.pt"]], 422, "override_settings.sd_vae", "sd_vae"),
        (["prompt": "x", "override_settings": ["sd_model_checkpoint": "other"]], 422, "override_settings.sd_model_checkpoint", "other"),
        (["prompt": "x", "override_settings": ["CLIP_stop_at_last_layers": 0]], 400, "override_settings.CLIP_stop_at_last_layers", "at least 1"),
        (["prompt": "x", "batch_size": 9, "n_iter": 2], 400, "n_iter", "16"),
        (["prompt": "x", "batch_size": 4_611_686_018_427_387_904, "n_iter": 4], 400, "n_iter", "16"),
        (["prompt": "x", "batch_size": 0], 400, "batch_size", "16"),
        (["prompt": "x", "steps": 500], 400, "steps", "steps"),
        (["prompt": "x", "cfg_scale": -1], 400, "cfg_scale", "guidance"),
        (["prompt": "x", "width": 63], 400, "width", "width"),
        (["prompt": "x", "seed": -2], 400, "seed", "seed"),
        (["prompt": "x", "color": "red"], 422, "color", "unknown field"),
    ] as [([String: any Sendable], Int, String, String)])
    func a1111ErrorsNameTheirField(body: [String: any Sendable], status: Int, field: String, fragment: String) async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let response = try await client.execute(uri: "/sdapi/v1/txt2img", method: .post, headers: jsonHeaders, body: json(body))
            #expect(Int(response.status.code) == status, "\(body): \(String(buffer: response.body))")
            // A1111's error shape: {"error", "detail", "body", "errors"}.
            let error = try object(response)
            #expect(error["field"] as? String == field, "\(body): \(error)")
            let detail = try #require(error["detail"] as? String)
            #expect(detail.lowercased().contains(fragment.lowercased()), "\(body): \(detail)")
            #expect(error["error"] is String && error["body"] is String && error["errors"] is String)
            #expect(harness.fake.jobCount == 0)
        }
    }

    @Test func a1111ListingsAndOptions() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let loras = try await client.execute(uri: "/sdapi/v1/loras", method: .get)
            let list = try #require(try JSONSerialization.jsonObject(with: Data(buffer: loras.body)) as? [[String: Any]])
            #expect(list.map { $0["name"] as? String } == ["alpha", "beta"])
            #expect(list.first?["alias"] as? String == "alpha-alias")
            #expect((list.first?["metadata"] as? [String: String])?["ss_output_name"] == "alpha-alias")
            let models = try await client.execute(uri: "/sdapi/v1/sd-models", method: .get)
            #expect(String(buffer: models.body).contains("\"model_name\":\"fake-model\""))
            let samplers = try await client.execute(uri: "/sdapi/v1/samplers", method: .get)
            let names = try #require(try JSONSerialization.jsonObject(with: Data(buffer: samplers.body)) as? [[String: Any]]).compactMap { $0["name"] as? String }
            #expect(names == ["Euler a", "Euler", "DPM++ 2M", "DDIM", "PLMS", "LCM"])
            let options = try object(try await client.execute(uri: "/sdapi/v1/options", method: .get))
            #expect(options["sd_model_checkpoint"] as? String == "fake-model")
            #expect(options["CLIP_stop_at_last_layers"] as? Int == 1)
            let scripts = try object(try await client.execute(uri: "/sdapi/v1/scripts", method: .get))
            #expect((scripts["txt2img"] as? [Any])?.isEmpty == true)
            // A1111's own shape for a path that is not served under /sdapi.
            let wrong = try await client.execute(uri: "/sdapi/v1/txt2img", method: .get)
            #expect(wrong.status == .methodNotAllowed)
            #expect(try object(wrong)["detail"] is String)
        }
    }

    @Test func progressMovesAndInterruptReturnsTheFinishedImages() async throws {
        // 200 steps x 20 ms: 4 s an image, so the interrupt lands in the second one even on a busy machine.
        let harness = try Harness(maxSteps: 250)
        defer { harness.cleanup() }
        harness.fake.stepDelay = 0.02
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let idle = try object(try await client.execute(uri: "/sdapi/v1/progress", method: .get))
            #expect(idle["progress"] as? Double == 0)
            #expect((idle["state"] as? [String: Any])?["job_count"] as? Int == 0)

            let render = Task {
                try await client.execute(uri: "/sdapi/v1/txt2img", method: .post, headers: jsonHeaders,
                                         body: json(["prompt": "x", "steps": 200, "n_iter": 2, "seed": 7]))
            }
            // Progress moves: the step and the fraction go up during the first image.
            var samples: [(Double, Int)] = []
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                let progress = try object(try await client.execute(uri: "/sdapi/v1/progress?skip_current_image=true", method: .get))
                let state = try #require(progress["state"] as? [String: Any])
                let step = state["sampling_step"] as? Int ?? 0
                if state["job_count"] as? Int == 2 { samples.append((progress["progress"] as? Double ?? 0, step)) }
                #expect(progress["current_image"] is NSNull)
                if (state["job_no"] as? Int ?? 0) >= 1 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(samples.count >= 3)
            #expect(Set(samples.map(\.1)).count >= 2, "the step never moved: \(samples)")
            #expect(zip(samples, samples.dropFirst()).allSatisfy { $0.0 <= $1.0 }, "\(samples)")
            // Interrupt during the second image: the answer has the first one.
            let interrupt = try await client.execute(uri: "/sdapi/v1/interrupt", method: .post)
            #expect(interrupt.status == .ok)
            let response = try await render.value
            #expect(response.status == .ok)
            let body = try object(response)
            #expect((body["images"] as? [String])?.count == 1)
            let info = try info(body)
            #expect(info["interrupted"] as? Bool == true)
            let rows = harness.requestRows
            #expect(rows.map(\.outcome) == ["ok", "interrupted"])
        }
    }

    /// An interrupted /v1/images job has no image to answer with: a 503 naming the interrupt.
    @Test func interruptingANativeJobIsA503() async throws {
        let harness = try Harness(maxSteps: 250)
        defer { harness.cleanup() }
        harness.fake.stepDelay = 0.02
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let render = Task {
                try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "x", "steps": 200]))
            }
            try await waitFor { (harness.service.jobs.running?.step ?? 0) > 2 }
            #expect(try await client.execute(uri: "/sdapi/v1/interrupt", method: .post).status == .ok)
            let response = try await render.value
            #expect(response.status == .serviceUnavailable)
            #expect(decodeError(response)?.code == "interrupted")
            #expect(harness.requestRows.map(\.outcome) == ["interrupted"])
        }
    }

    // MARK: OpenAI

    @Test func openAIGenerationsAndModels() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let response = try await client.execute(
                uri: "/v1/images/generations", method: .post, headers: jsonHeaders,
                body: json(["prompt": "a fox", "model": "beta", "n": 2, "size": "64x32", "response_format": "b64_json",
                            "quality": "standard", "user": "u1", "seed": 9, "steps": 3, "guidance": 4, "negative_prompt": "blur"]))
            #expect(response.status == .ok, "\(String(buffer: response.body))")
            let body = try object(response)
            #expect(body["created"] is Int)
            let data = try #require(body["data"] as? [[String: Any]])
            #expect(data.count == 2)
            #expect(data.first?["revised_prompt"] as? String == "a fox")
            let encoded = try #require(data.last?["b64_json"] as? String)
            let png = try PNGReader.read(try #require(Data(base64Encoded: encoded)))
            #expect(png.width == 64 && png.height == 32)
            #expect(harness.fake.jobs.map(\.request.seed) == [9, 10])
            #expect(harness.fake.jobs.first?.request.adapters == [AdapterSpec(name: "beta")])
            #expect(harness.fake.jobs.first?.request.negativePrompt == "blur")
            #expect(harness.requestRows.allSatisfy { $0.api == "openai" })

            // The base by its id: no adapter; url answers point at the job's images.
            let base = try await client.execute(uri: "/v1/images/generations", method: .post, headers: jsonHeaders,
                                                body: json(["prompt": "x", "model": "fake-model", "steps": 2, "response_format": "url"]))
            #expect(base.status == .ok)
            #expect(harness.fake.jobs.last?.request.adapters == [])
            let url = try #require(((try object(base))["data"] as? [[String: Any]])?.first?["url"] as? String)
            let path = String(url[try #require(url.range(of: "/v1/jobs/"))!.lowerBound...])
            let image = try await client.execute(uri: path, method: .get)
            #expect(image.status == .ok)
            #expect(image.headers[.contentType] == "image/png")

            let models = try object(try await client.execute(uri: "/v1/models", method: .get))
            #expect((models["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == ["fake-model", "alpha", "beta"])
            #expect(try await client.execute(uri: "/v1/models/alpha", method: .get).status == .ok)
            let missingModel = try await client.execute(uri: "/v1/models/nope", method: .get)
            #expect(missingModel.status == .notFound)
        }
    }

    @Test(arguments: [
        (["prompt": "x", "model": "dall-e-3"], 404, "model", "model_not_found"),
        (["prompt": "x", "model": "../etc"], 404, "model", "model_not_found"),
        (["model": "alpha"], 400, "prompt", "invalid_field"),
        (["prompt": "x", "n": 11], 400, "n", "invalid_field"),
        (["prompt": "x", "size": "big"], 400, "size", "invalid_field"),
        (["prompt": "x", "size": "4096x4096"], 400, "size", "invalid_field"),
        (["prompt": "x", "response_format": "jpeg"], 400, "response_format", "invalid_field"),
        (["prompt": "x", "background": "transparent"], 422, "background", "unsupported"),
        (["prompt": "x", "output_format": "webp"], 422, "output_format", "unsupported"),
        (["prompt": "x", "stream": true], 422, "stream", "unsupported"),
        (["prompt": "x", "colour": "red"], 400, "colour", "invalid_field"),
        (["prompt": "x", "steps": 0], 400, "steps", "invalid_field"),
    ] as [([String: any Sendable], Int, String, String)])
    func openAIErrorsHaveOpenAIsShape(body: [String: any Sendable], status: Int, param: String, code: String) async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let response = try await client.execute(uri: "/v1/images/generations", method: .post, headers: jsonHeaders, body: json(body))
            #expect(Int(response.status.code) == status, "\(body): \(String(buffer: response.body))")
            let error = try #require(try object(response)["error"] as? [String: Any])
            #expect(error["param"] as? String == param, "\(body): \(error)")
            #expect(error["code"] as? String == code, "\(body): \(error)")
            #expect(error["type"] as? String == "invalid_request_error")
            #expect((error["message"] as? String)?.isEmpty == false)
            #expect(harness.fake.jobCount == 0)
        }
    }

    /// `?adapter=NAME` (what deploy/nginx hashes on) works on every image route, as on /v1/images.
    @Test func queryAdapterOnEveryImageRoute() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let tagged = try await client.execute(uri: "/sdapi/v1/txt2img?adapter=alpha", method: .post, headers: jsonHeaders,
                                                  body: json(["prompt": "x <lora:alpha:0.5>", "steps": 2]))
            #expect(tagged.status == .ok)
            #expect(harness.fake.jobs.last?.request.adapters == [AdapterSpec(name: "alpha", scale: 0.5)])
            let untagged = try await client.execute(uri: "/sdapi/v1/txt2img?adapter=beta", method: .post, headers: jsonHeaders,
                                                    body: json(["prompt": "x", "steps": 2]))
            #expect(untagged.status == .ok)
            #expect(harness.fake.jobs.last?.request.adapters == [AdapterSpec(name: "beta")])
            let mismatch = try await client.execute(uri: "/sdapi/v1/txt2img?adapter=beta", method: .post, headers: jsonHeaders,
                                                    body: json(["prompt": "x <lora:alpha:1>", "steps": 2]))
            #expect(mismatch.status == .badRequest)
            #expect(try object(mismatch)["field"] as? String == "adapter")
            let openAI = try await client.execute(uri: "/v1/images/generations?adapter=alpha", method: .post, headers: jsonHeaders,
                                                  body: json(["prompt": "x", "steps": 2]))
            #expect(openAI.status == .ok)
            #expect(harness.fake.jobs.last?.request.adapters == [AdapterSpec(name: "alpha")])
            let openAIMismatch = try await client.execute(uri: "/v1/images/generations?adapter=alpha", method: .post, headers: jsonHeaders,
                                                          body: json(["prompt": "x", "model": "beta"]))
            #expect(openAIMismatch.status == .badRequest)
            let missing = try await client.execute(uri: "/v1/images/generations?adapter=gone", method: .post, headers: jsonHeaders,
                                                   body: json(["prompt": "x"]))
            #expect(missing.status == .notFound)
            #expect(harness.fake.jobCount == 3)

            // A job's URLs carry what the balancer routed by, so follow-ups reach the same replica.
            let routed = try await client.execute(uri: "/v1/images?async=true&adapter=alpha", method: .post, headers: jsonHeaders,
                                                  body: json(["prompt": "x", "steps": 2]))
            let id = try #require(routed.headers[Self.jobIdHeader])
            #expect(routed.headers[.location] == "/v1/jobs/\(id)?adapter=alpha")
            var headers = jsonHeaders
            headers[HTTPField.Name("X-Request-Id")!] = "0123abcdef"
            let base = try await client.execute(uri: "/v1/images?async=true", method: .post, headers: headers,
                                                body: json(["prompt": "x", "steps": 2]))
            let baseID = try #require(base.headers[Self.jobIdHeader])
            #expect(base.headers[.location] == "/v1/jobs/\(baseID)?route=0123abcdef")
            try await waitFor { harness.service.jobs.status(baseID)?.state == .done }
            let done = try object(try await client.execute(uri: "/v1/jobs/\(baseID)?route=0123abcdef", method: .get))
            #expect(done["image_url"] as? String == "/v1/jobs/\(baseID)/image?route=0123abcdef")
            let url = try await client.execute(uri: "/v1/images/generations?adapter=beta", method: .post, headers: jsonHeaders,
                                               body: json(["prompt": "x", "steps": 2, "n": 2, "response_format": "url"]))
            let urls = try #require(try object(url)["data"] as? [[String: Any]]).compactMap { $0["url"] as? String }
            #expect(urls.count == 2 && urls[1].hasSuffix("/image?adapter=beta&index=1"), "\(urls)")
        }
    }

    // MARK: Jobs

    @Test func asyncJobsArePolledAndFetched() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        let gate = DispatchSemaphore(value: 0)
        harness.fake.jobGate = gate
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let accepted = try await client.execute(uri: "/v1/images?async=true", method: .post, headers: jsonHeaders,
                                                    body: json(["prompt": "x", "seed": 5, "steps": 3]))
            #expect(accepted.status == .accepted)
            let id = try #require(accepted.headers[Self.jobIdHeader])
            #expect(accepted.headers[.location] == "/v1/jobs/\(id)")
            let second = try await client.execute(uri: "/v1/images?async=1", method: .post, headers: jsonHeaders,
                                                  body: json(["prompt": "y", "steps": 3]))
            let secondID = try #require(second.headers[Self.jobIdHeader])
            try await waitFor { harness.fake.jobCount == 1 }
            let running = try object(try await client.execute(uri: "/v1/jobs/\(id)", method: .get))
            #expect(running["state"] as? String == "running")
            let queued = try object(try await client.execute(uri: "/v1/jobs/\(secondID)", method: .get))
            #expect(queued["state"] as? String == "queued")
            #expect(queued["queue_position"] as? Int == 0)
            let early = try await client.execute(uri: "/v1/jobs/\(id)/image", method: .get)
            #expect(early.status == .conflict)
            gate.signal()
            gate.signal()
            try await waitFor { harness.service.jobs.status(secondID)?.state == .done }
            let done = try object(try await client.execute(uri: "/v1/jobs/\(id)", method: .get))
            #expect(done["state"] as? String == "done")
            #expect(done["progress"] as? Double == 1)
            #expect(done["image_url"] as? String == "/v1/jobs/\(id)/image")
            let image = try await client.execute(uri: "/v1/jobs/\(id)/image", method: .get)
            #expect(image.status == .ok)
            #expect(try PNGReader.read(Data(buffer: image.body)).text["parameters"]?.contains("Seed: 5") == true)
            #expect(try await client.execute(uri: "/v1/jobs/\(id)/image?index=3", method: .get).status == .badRequest)
            #expect(try await client.execute(uri: "/v1/jobs/nope", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/v1/images?async=maybe", method: .post, headers: jsonHeaders,
                                             body: json(["prompt": "x"])).status == .badRequest)

            // A job the client waited for: its id in the header, its status done, its image not kept.
            harness.fake.jobGate = nil
            let sync = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "x", "steps": 2]))
            let syncID = try #require(sync.headers[Self.jobIdHeader])
            #expect(try object(try await client.execute(uri: "/v1/jobs/\(syncID)", method: .get))["state"] as? String == "done")
            #expect(try await client.execute(uri: "/v1/jobs/\(syncID)/image", method: .get).status == .gone)

            // A failing asynchronous job reports its error.
            harness.fake.failNext = LoRAError.unknownAdapter(name: "alpha", directory: "/x", available: [])
            let failing = try await client.execute(uri: "/v1/images?async=true", method: .post, headers: jsonHeaders,
                                                   body: json(["prompt": "x", "steps": 2]))
            let failingID = try #require(failing.headers[Self.jobIdHeader])
            try await waitFor { harness.service.jobs.status(failingID)?.state == .failed }
            let failed = try await client.execute(uri: "/v1/jobs/\(failingID)/image", method: .get)
            #expect(failed.status == .notFound)
            #expect(decodeError(failed)?.code == "adapter_not_found")
            #expect(harness.requestRows.map(\.api).allSatisfy { $0 == "images" })
        }
    }
}

@Suite("A1111 prompt tags")
struct PromptTagTests {
    @Test func tagsBecomeAdaptersAndLeaveTheText() throws {
        let cases: [(String, String, [AdapterSpec])] = [
            ("a cat", "a cat", []),
            ("<lora:alpha:0.8> a cat", " a cat", [AdapterSpec(name: "alpha", scale: 0.8)]),
            ("a <lora:alpha> cat", "a  cat", [AdapterSpec(name: "alpha", scale: 1)]),
            ("x <lora:a:0.5>, <lyco:b:-1>", "x , ", [AdapterSpec(name: "a", scale: 0.5), AdapterSpec(name: "b", scale: -1)]),
            ("<lora:a:0.5><lora:a:0.25>", "", [AdapterSpec(name: "a", scale: 0.75)]),
            ("<lora:a:te=0.4:unet=0.4>", "", [AdapterSpec(name: "a", scale: 0.4)]),
            ("<lora:a:0.3:0.3>", "", [AdapterSpec(name: "a", scale: 0.3)]),
            ("<lora:a: 1e-1 >", "", [AdapterSpec(name: "a", scale: 0.1)]),
            ("i <3 cats, a<b>c, <lora:>, <:x>, <lora", "i <3 cats, a<b>c, <lora:>, <:x>, <lora", []),
            ("<lora:my lora:1>", "", [AdapterSpec(name: "my lora", scale: 1)]),
            ("<<lora:a:1>>", "<>", [AdapterSpec(name: "a", scale: 1)]),
        ]
        for (prompt, text, adapters) in cases {
            let extracted = try PromptTags.extract(prompt)
            #expect(extracted.prompt == text, "\(prompt)")
            #expect(extracted.adapters == adapters, "\(prompt)")
        }
    }

    @Test func badTagsAreRefused() {
        for prompt in ["<lora:a:x>", "<lora:a:1:2>", "<lora:a:1:1:8>", "<lora:a:dyn=4>", "<lora:a:wat=1>", "<lora::1>",
                       "<hypernet:h:1>", "<lora:a:nan>", "<lora:a:inf>"] {
            #expect(throws: APIError.self, "\(prompt)") { try PromptTags.extract(prompt) }
        }
    }
}
