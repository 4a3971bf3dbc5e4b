import Foundation
import HotswapTestSupport
import HTTPTypes
import HotswapPipeline
import Hummingbird
import HummingbirdTesting
import Testing
@testable import HotswapServer
import HotswapLoRA
import HotswapStore

@Suite("Server routes (fake generator)")
struct RouterTests {
    @Test func healthAnswersBeforeReadyAndReadyzWaitsForWarmup() async throws {
        let gate = DispatchSemaphore(value: 0)
        let harness = try Harness(warmupGate: gate)
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)
            let notReady = try await client.execute(uri: "/readyz", method: .get)
            #expect(notReady.status == .serviceUnavailable)
            let early = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "x"]))
            #expect(early.status == .serviceUnavailable)
            #expect(decodeError(early)?.code == "not_ready")
            gate.signal()
            try await waitUntilReady(client)
            let ready = try await client.execute(uri: "/readyz", method: .get)
            #expect(String(buffer: ready.body).contains("fake-model"))
        }
        #expect(harness.warmupRows.count == 1)
    }

    @Test func postReturnsPNGWithInfotextAndHeaders() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let response = try await client.execute(
                uri: "/v1/images", method: .post, headers: jsonHeaders,
                body: json(["prompt": "a red cube", "adapter": "alpha", "seed": 42, "width": 64, "height": 32, "steps": 3]))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "image/png")
            #expect(response.headers[HTTPField.Name("X-Seed")!] == "42")
            #expect(response.headers[HTTPField.Name("X-Adapter-Cache")!] == "miss")
            for header in ["X-Queue-Ms", "X-Swap-Ms", "X-Inference-Ms"] {
                #expect(response.headers[HTTPField.Name(header)!].flatMap(Double.init) != nil, "\(header)")
            }
            let png = try PNGReader.read(Data(buffer: response.body))
            #expect(png.width == 64 && png.height == 32)
            let infotext = try #require(png.text["parameters"])
            #expect(infotext.hasPrefix("a red cube"))
            #expect(infotext.contains("Seed: 42"))
            #expect(infotext.contains("Steps: 3"))

            // Same adapter again: reuse; the other one, now a miss; back to alpha: a cache hit.
            let again = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                                 body: json(["prompt": "x", "adapter": "alpha"]))
            #expect(again.headers[HTTPField.Name("X-Adapter-Cache")!] == "reuse")
            let seed = try #require(again.headers[HTTPField.Name("X-Seed")!].flatMap(UInt64.init))
            #expect(try PNGReader.read(Data(buffer: again.body)).text["parameters"]?.contains("Seed: \(seed)") == true)
            let beta = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                                body: json(["prompt": "x", "adapters": [["name": "beta", "scale": 0.5]]]))
            #expect(beta.headers[HTTPField.Name("X-Adapter-Cache")!] == "miss")
            let back = try await client.execute(uri: "/v1/images?adapter=alpha", method: .post, headers: jsonHeaders,
                                                body: json(["prompt": "x"]))
            #expect(back.headers[HTTPField.Name("X-Adapter-Cache")!] == "hit")
            let none = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                                body: json(["prompt": "x"]))
            #expect(none.headers[HTTPField.Name("X-Adapter-Cache")!] == "none")
        }
        let rows = harness.requestRows
        #expect(rows.count == 5)
        #expect(rows.map { $0.swap?.cache } == [.miss, .reuse, .miss, .hit, CacheOutcome.none])
        #expect(rows.map(\.adapters) == ["alpha:1", "alpha:1", "beta:0.5", "alpha:1", ""])
        #expect(harness.fake.jobs[2].request.adapters == [AdapterSpec(name: "beta", scale: 0.5)])
        #expect(rows.allSatisfy { $0.outcome == "ok" && $0.status == 200 })
    }

    @Test func acceptJSONAnswersBase64AndTimings() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            var headers = jsonHeaders
            headers[.accept] = "application/json"
            let response = try await client.execute(uri: "/v1/images", method: .post, headers: headers,
                                                    body: json(["prompt": "x", "seed": 7]))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "application/json")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any])
            #expect((object["seed"] as? NSNumber)?.uint64Value == 7)
            let base64 = try #require(object["image_base64"] as? String)
            let png = try PNGReader.read(try #require(Data(base64Encoded: base64)))
            #expect(png.width == 64)
            let timings = try #require(object["timings"] as? [String: Any])
            for key in ["queue_ms", "swap_ms", "inference_ms", "total_ms", "denoise_ms"] { #expect(timings[key] != nil, "\(key)") }
        }
    }

    @Test func largeSeedsRoundTrip() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let body = ByteBuffer(string: #"{"prompt": "x", "seed": 18446744073709551615}"#)
            let response = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: body)
            #expect(response.headers[HTTPField.Name("X-Seed")!] == "18446744073709551615")
        }
    }

    /// Every malformed request gets a 4xx naming the field, and the next request is served.
    @Test(arguments: [
        (#"{"prompt": "x""#, 400, "invalid_json", nil),
        (#"[1, 2]"#, 400, "invalid_json", nil),
        (#"{"negative_prompt": "x"}"#, 400, "invalid_field", "prompt"),
        (#"{"prompt": 5}"#, 400, "invalid_field", "prompt"),
        (#"{"prompt": "x", "steps": "20"}"#, 400, "invalid_field", "steps"),
        (#"{"prompt": "x", "steps": 2.5}"#, 400, "invalid_field", "steps"),
        (#"{"prompt": "x", "steps": true}"#, 400, "invalid_field", "steps"),
        (#"{"prompt": "x", "steps": 0}"#, 400, "invalid_field", "steps"),
        (#"{"prompt": "x", "steps": 51}"#, 400, "invalid_field", "steps"),
        (#"{"prompt": "x", "width": 100}"#, 400, "invalid_field", "width"),
        (#"{"prompt": "x", "height": -8}"#, 400, "invalid_field", "height"),
        (#"{"prompt": "x", "width": 1024, "height": 1024}"#, 400, "invalid_field", "width"),
        (#"{"prompt": "x", "scheduler": "turbo"}"#, 400, "invalid_field", "scheduler"),
        (#"{"prompt": "x", "guidance": "high"}"#, 400, "invalid_field", "guidance"),
        (#"{"prompt": "x", "seed": -1}"#, 400, "invalid_field", "seed"),
        (#"{"prompt": "x", "clip_skip": 12}"#, 400, "invalid_field", "clip_skip"),
        (#"{"prompt": "x", "adapter": 3}"#, 400, "invalid_field", "adapter"),
        (#"{"prompt": "x", "adapter": "../etc/passwd"}"#, 400, "invalid_adapter_name", "adapter"),
        (#"{"prompt": "x", "adapter": "ghost"}"#, 404, "adapter_not_found", "adapter"),
        (#"{"prompt": "x", "adapters": [{"name": "alpha"}, {"name": "ghost"}]}"#, 404, "adapter_not_found", "adapters[1].name"),
        (#"{"prompt": "x", "adapters": [{"name": "alpha", "scale": "big"}]}"#, 400, "invalid_field", "adapters[0].scale"),
        (#"{"prompt": "x", "adapters": {"name": "alpha"}}"#, 400, "invalid_field", "adapters"),
        (#"{"prompt": "x", "stepz": 3}"#, 400, "invalid_field", "stepz"),
    ] as [(String, Int, String, String?)])
    func invalidRequestsGet4xxNamingTheField(body: String, status: Int, code: String, field: String?) async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let response = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                                    body: ByteBuffer(string: body))
            #expect(Int(response.status.code) == status, "\(body)")
            let error = decodeError(response)
            #expect(error?.code == code, "\(body)")
            #expect(error?.field == field, "\(body)")
            #expect(error?.message.isEmpty == false)
            let next = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "ok"]))
            #expect(next.status == .ok)
        }
        #expect(harness.fake.jobCount == 1)
    }

    @Test func oversizedBodyAndBadQueryAdapter() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let big = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                               body: json(["prompt": String(repeating: "x", count: 10_000)]))
            #expect(big.status == .contentTooLarge)
            #expect(decodeError(big)?.code == "body_too_large")
            let bad = try await client.execute(uri: "/v1/images?adapter=..%2F..%2Fetc", method: .post, headers: jsonHeaders,
                                               body: json(["prompt": "x"]))
            #expect(bad.status == .badRequest)
            let conflict = try await client.execute(uri: "/v1/images?adapter=beta", method: .post, headers: jsonHeaders,
                                                    body: json(["prompt": "x", "adapter": "alpha"]))
            #expect(conflict.status == .badRequest)
            let unknownRoute = try await client.execute(uri: "/v2/nothing", method: .get)
            #expect(unknownRoute.status == .notFound)
            #expect(decodeError(unknownRoute)?.code == "not_found")
            let next = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "ok"]))
            #expect(next.status == .ok)
        }
    }

    @Test func engineFailuresAreAnsweredAndRecorded() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            harness.fake.failNext = AdapterValidationError("tensor lora_unet_x.lora_down.weight does not match the base")
            let corrupt = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                                   body: json(["prompt": "x", "adapter": "alpha"]))
            #expect(corrupt.status == .unprocessableContent)
            #expect(decodeError(corrupt)?.code == "invalid_adapter")
            harness.fake.failNext = NSError(domain: "boom", code: 1)
            let failed = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "x"]))
            #expect(failed.status == .internalServerError)
            #expect(decodeError(failed)?.code == "generation_failed")
            let next = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "ok"]))
            #expect(next.status == .ok)
        }
        #expect(harness.requestRows.map(\.status) == [422, 500, 200])
    }

    @Test func fullQueueAnswers429WithRetryAfter() async throws {
        let harness = try Harness(queueDepth: 2)
        defer { harness.cleanup() }
        let gate = DispatchSemaphore(value: 0)
        harness.fake.jobGate = gate
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                // One job runs (held by the gate), two wait, the rest are refused at once.
                group.addTask {
                    let r = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "0"]))
                    return (Int(r.status.code), nil)
                }
                try await waitFor { harness.fake.jobCount >= 1 }
                for i in 1...6 {
                    group.addTask {
                        let r = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                                         body: json(["prompt": "\(i)"]))
                        return (Int(r.status.code), r.headers[.retryAfter])
                    }
                }
                // Wait until the refusals are in, then let the jobs run.
                var statuses: [Int] = []
                var retryAfter: [String?] = []
                while statuses.filter({ $0 == 429 }).count < 4 {
                    let (status, retry) = try await group.next()!
                    statuses.append(status)
                    retryAfter.append(retry)
                }
                for _ in 0..<3 { gate.signal() }
                for try await (status, _) in group { statuses.append(status) }
                #expect(statuses.sorted() == [200, 200, 200, 429, 429, 429, 429])
                #expect(retryAfter.compactMap { $0 }.allSatisfy { Int($0) ?? 0 >= 1 })
            }
            let metrics = try await client.execute(uri: "/metrics", method: .get)
            #expect(String(buffer: metrics.body).contains(#"hotswap_requests_total{outcome="rejected"} 4"#))
        }
    }

    @Test func jobWaitingPastTheTimeoutGets503() async throws {
        let harness = try Harness(requestTimeout: 0.3)
        defer { harness.cleanup() }
        let gate = DispatchSemaphore(value: 0)
        harness.fake.jobGate = gate
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            async let first = client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "0"]))
            try await waitFor { harness.fake.jobCount >= 1 }
            let second = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "1"]))
            #expect(second.status == .serviceUnavailable)
            #expect(decodeError(second)?.code == "queue_timeout")
            gate.signal()
            #expect(try await first.status == .ok)
        }
        #expect(harness.fake.jobCount == 1)
    }

    @Test func timingsAndMetrics() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            for adapter in ["alpha", "beta", "alpha"] {
                _ = try await client.execute(uri: "/v1/images?adapter=\(adapter)", method: .post, headers: jsonHeaders,
                                             body: json(["prompt": "x"]))
            }
            let timings = try await client.execute(uri: "/v1/timings?limit=2", method: .get)
            #expect(timings.status == .ok)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(buffer: timings.body)) as? [String: Any])
            let rows = try #require(object["requests"] as? [[String: Any]])
            #expect(rows.count == 2)
            #expect(rows.first?["adapters"] as? String == "alpha:1")
            #expect(rows.first?["cache"] as? String == "hit")
            let badLimit = try await client.execute(uri: "/v1/timings?limit=zero", method: .get)
            #expect(decodeError(badLimit)?.field == "limit")

            let metrics = try await client.execute(uri: "/metrics", method: .get)
            let text = String(buffer: metrics.body)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain") == true)
            for line in ["# TYPE hotswap_queue_seconds histogram", "# TYPE hotswap_swap_seconds histogram",
                         "# TYPE hotswap_inference_seconds histogram", "hotswap_inference_seconds_count 3",
                         #"hotswap_requests_total{outcome="ok"} 3"#, #"hotswap_adapter_cache_total{result="miss"} 2"#,
                         #"hotswap_adapter_cache_total{result="hit"} 1"#, "hotswap_adapter_swaps_total 3", "hotswap_adapter_loads_total 2",
                         "hotswap_queue_depth 0", "hotswap_ready 1"] {
                #expect(text.contains(line), "\(line)")
            }
        }
    }
}

@Suite struct APIErrorMappingTests {
    @Test func adapterErrorsNameFilesWithoutTheServersFolders() {
        let error = LoRAError.invalidValues(file: "/srv/hotswap/adapters/night.safetensors", key: "x.alpha", reason: "is nan")
        let (api, outcome) = APIError.from(error)
        #expect(api.status == .unprocessableContent && outcome == .invalid)
        #expect(api.message == "adapter night.safetensors: x.alpha is nan", "\(api.message)")
        let (missing, _) = APIError.from(LoRAError.unknownAdapter(name: "ghost", directory: "/srv", available: []),
                                         adapters: [AdapterSpec(name: "a"), AdapterSpec(name: "ghost")])
        #expect(missing.status == .notFound && missing.field == "adapters[1].name")
        #expect(APIError.from(NonFiniteImageError()).0.code == "non_finite_image")
        #expect(APIError.from(GenerationError.stepsOutOfRange(0, max: 50)).0.field == "steps")
    }
}
