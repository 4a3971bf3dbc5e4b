import Foundation
import HotswapModels
import HTTPTypes
import HotswapCore
import HotswapLoRA
import HotswapPipeline
import Hummingbird
import HummingbirdTesting
import Logging
import HotswapTestSupport
import Testing
@testable import HotswapServer
import HotswapStore

/// The real thing: the server on a free port (0) with the fixture model, the real pipeline and
/// the SQLite timing database.
@Suite("Server live (fixture model)", .serialized)
struct LiveServerTests {
    @Test func realServerRendersPNGAndRecordsRows() async throws {
        let directory = try makeTemporaryDirectory("live")
        defer { try? FileManager.default.removeItem(at: directory) }
        let adapters = directory.appendingPathComponent("adapters")
        try FileManager.default.createDirectory(at: adapters, withIntermediateDirectories: true)
        let dbPath = directory.appendingPathComponent("timings.sqlite").path
        let store = try TimingStore(path: dbPath)
        let configuration = ServerConfiguration(host: "127.0.0.1", port: 0, adaptersDirectory: adapters, queueDepth: 2)
        let generator = PipelineGenerator(modelDirectory: Fixtures.url("models/sd1-tiny"), adaptersDirectory: adapters,
                                          limits: configuration.limits, warmupSteps: 1)
        var logger = Logger(label: "live")
        logger.logLevel = .warning
        let service = ImageService(
            configuration: configuration, generator: generator, store: store, logger: logger)
        let app = buildApplication(service: service, logger: logger)

        try await app.test(.ahc(.http)) { client in
            #expect(client.port != nil && client.port != 0)
            try await waitUntilReady(client, seconds: 120)
            let response = try await client.execute(
                uri: "/v1/images", method: .post, headers: jsonHeaders,
                body: json(["prompt": "a red square", "seed": 1234, "steps": 3, "width": 64, "height": 48]))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "image/png")
            #expect(response.headers[HTTPField.Name("X-Seed")!] == "1234")
            #expect(response.headers[HTTPField.Name("X-Adapter-Cache")!] == "none")
            let inference = try #require(response.headers[HTTPField.Name("X-Inference-Ms")!].flatMap(Double.init))
            #expect(inference > 0)
            #expect(response.headers[HTTPField.Name("X-Queue-Ms")!].flatMap(Double.init) != nil)
            #expect(response.headers[HTTPField.Name("X-Swap-Ms")!].flatMap(Double.init) != nil)
            let png = try PNGReader.read(Data(buffer: response.body))
            #expect(png.width == 64 && png.height == 48)
            #expect(png.rgb.count == 64 * 48 * 3)
            let infotext = try #require(png.text["parameters"])
            #expect(infotext.contains("Seed: 1234") && infotext.contains("Size: 64x48") && infotext.contains("Model: sd1-tiny"))

            // The same request through the engine directly gives the same pixels.
            let model = try StableDiffusionModel(directory: Fixtures.url("models/sd1-tiny"))
            let direct = try StableDiffusionPipeline(model: model).generate(
                GenerationRequest(prompt: "a red square", steps: 3, seed: 1234, width: 64, height: 48))
            #expect(direct.rgb == png.rgb)

            // An error leaves the server serving.
            let bad = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                               body: json(["prompt": "x", "width": 60]))
            #expect(bad.status == .badRequest)
            let again = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                                 body: json(["prompt": "a blue circle", "steps": 2]))
            #expect(again.status == .ok)
            #expect(try PNGReader.read(Data(buffer: again.body)).width == 64)

            // LoRA: a miss, then reuse, back to the base model, then a cache hit.
            try FileManager.default.copyItem(at: Fixtures.url("lora/sd1-tiny/kohya.safetensors"),
                                             to: adapters.appendingPathComponent("kohya.safetensors"))
            var caches: [String] = []
            var first: [UInt8] = []
            for adapter in ["kohya", "kohya", nil, "kohya"] as [String?] {
                var body: [String: Any] = ["prompt": "a red square", "seed": 1234, "steps": 3, "width": 64, "height": 48]
                if let adapter { body["adapters"] = [["name": adapter, "scale": 0.8]] }
                let r = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(body))
                #expect(r.status == .ok)
                caches.append(r.headers[HTTPField.Name("X-Adapter-Cache")!] ?? "?")
                let image = try PNGReader.read(Data(buffer: r.body))
                if adapter != nil {
                    #expect(image.text["parameters"]?.contains("Lora hashes") == true)
                    if first.isEmpty { first = image.rgb } else { #expect(image.rgb == first) }
                } else {
                    #expect(image.rgb == png.rgb, "back to the base model gives the base image")
                }
            }
            #expect(caches == ["miss", "reuse", "none", "hit"])
            #expect(first != png.rgb)
            // The same adapter through the engine directly gives the same pixels.
            let manager = AdapterManager(model: model, adaptersDirectory: adapters, cacheLimitBytes: 1 << 26)
            try manager.activate([AdapterSpec(name: "kohya", scale: 0.8)])
            let directLoRA = try StableDiffusionPipeline(model: model).generate(
                GenerationRequest(prompt: "a red square", steps: 3, seed: 1234, width: 64, height: 48))
            #expect(directLoRA.rgb == first)

            // Uploads are key-checked against the base.
            let badKeys = try await client.execute(uri: "/v1/adapters/bad", method: .put,
                                                   body: ByteBuffer(bytes: try Data(contentsOf: Fixtures.url("lora/sd1-tiny/bad_keys.safetensors"))))
            #expect(badKeys.status == .unprocessableContent)
            let badShapes = try await client.execute(uri: "/v1/adapters/bad", method: .put,
                                                     body: ByteBuffer(bytes: try Data(contentsOf: Fixtures.url("lora/sd1-tiny/bad_shapes.safetensors"))))
            #expect(badShapes.status == .unprocessableContent)
            let garbage = try await client.execute(uri: "/v1/adapters/bad", method: .put, body: ByteBuffer(string: "garbage"))
            #expect(garbage.status == .unprocessableContent)
            let good = try await client.execute(uri: "/v1/adapters/peft", method: .put,
                                                body: ByteBuffer(bytes: try Data(contentsOf: Fixtures.url("lora/sd1-tiny/peft_attn.safetensors"))))
            #expect(good.status == .created)
            let list = try await client.execute(uri: "/v1/adapters", method: .get)
            struct Listing: Decodable { let adapters: [AdapterDescription] }
            let listed = try JSONDecoder().decode(Listing.self, from: Data(buffer: list.body)).adapters
            #expect(listed.map(\.name) == ["kohya", "peft"])
            #expect(listed.first?.format == "kohya" && listed.first?.cached == true && listed.first?.active == true)
            #expect(listed.last?.rank ?? 0 > 0 && listed.last?.targets.isEmpty == false)
            let withPeft = try await client.execute(uri: "/v1/images?adapter=peft", method: .post, headers: jsonHeaders,
                                                    body: json(["prompt": "x", "steps": 2]))
            #expect(withPeft.status == .ok)
            #expect(withPeft.headers[HTTPField.Name("X-Adapter-Cache")!] == "miss")

            let timings = try await client.execute(uri: "/v1/timings", method: .get)
            let rows = try #require(try JSONSerialization.jsonObject(with: Data(buffer: timings.body)) as? [String: Any])
            #expect((rows["requests"] as? [Any])?.count == 7)
        }

        // The database was flushed and closed at shutdown; read it back.
        let reopened = try TimingStore(path: dbPath)
        defer { reopened.close() }
        let rows = try reopened.latestRequests(limit: 10)
        #expect(rows.count == 7)
        #expect(rows.last?.seed == 1234)
        #expect(rows.last?.width == 64 && rows.last?.height == 48 && rows.last?.steps == 3)
        #expect(rows.allSatisfy { $0.outcome == "ok" && $0.status == 200 && ($0.generation?.inferenceMs ?? 0) > 0 && $0.requestId?.isEmpty == false })
        #expect(rows.reversed().map { $0.swap?.cache.rawValue } == ["none", "none", "miss", "reuse", "none", "hit", "miss"])
        #expect(rows.reversed().map(\.adapters) == ["", "", "kohya:0.8", "kohya:0.8", "", "kohya:0.8", "peft:1"])
        let swap = try #require(rows[4].swap)
        #expect(swap.loadMs > 0 && swap.totalMs >= swap.loadMs)
        let counts = try reopened.rowCounts()
        #expect(counts.warmups == 1)
        #expect(counts.requests == 7)
    }
}

/// Disconnects and the queue, over real sockets (fake engine, real HTTP server on a free port).
@Suite("Server live disconnects (fake generator)", .serialized)
struct LiveDisconnectTests {
    @Test func aClientThatDisconnectsBeforeItsJobStartsFreesItsSlot() async throws {
        let harness = try Harness(queueDepth: 1)
        defer { harness.cleanup() }
        let gate = DispatchSemaphore(value: 0)
        harness.fake.jobGate = gate
        try await harness.app.test(.ahc(.http)) { client in
            try await waitUntilReady(client)
            let port = try #require(client.port)
            let running = try openPost(port: port, body: #"{"prompt": "running"}"#)
            try await waitFor { harness.fake.jobCount == 1 }
            let waiting = try openPost(port: port, body: #"{"prompt": "waiting"}"#)
            try await waitFor { harness.service.queue.waiting == 1 }
            // The queue is full: the next one is refused.
            let refused = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders, body: json(["prompt": "x"]))
            #expect(refused.status == .tooManyRequests)
            // The waiting client hangs up: its slot is free, its job never runs.
            close(waiting)
            try await waitFor { harness.service.queue.waiting == 0 }
            let metrics = try await client.execute(uri: "/metrics", method: .get)
            #expect(String(buffer: metrics.body).contains(#"hotswap_requests_total{outcome="cancelled"} 1"#))
            let next = try openPost(port: port, body: #"{"prompt": "next"}"#)
            try await waitFor { harness.service.queue.waiting == 1 }
            gate.signal()
            gate.signal()
            #expect(try readStatus(running) == 200)
            #expect(try readStatus(next) == 200)
        }
        #expect(harness.fake.jobs.map(\.request.prompt) == ["running", "next"])
    }
}

/// Sends POST /v1/images on a new socket and returns it without reading the answer.
func openPost(port: Int, body: String) throws -> Int32 {
    let fd = try connectLoopback(port: port)
    let request = "POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    _ = request.withCString { send(fd, $0, strlen($0), 0) }
    return fd
}

/// Reads the status line of the answer on `fd`, then closes it.
func readStatus(_ fd: Int32) throws -> Int {
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 64)
    let n = recv(fd, &buffer, buffer.count, 0)
    guard n > 12 else { return 0 }
    return Int(String(decoding: buffer[9..<12], as: UTF8.self)) ?? 0
}

/// A hostile adapter against the real engine.
@Suite("Server live, hostile adapter (fixture model)")
struct LiveHostileAdapterTests {
    /// A hostile adapter (NaN alphas) placed in the folder by hand or uploaded: the listing stays
    /// 200, a request naming it is a 422, the upload is refused and never visible, and the server
    /// keeps rendering.
    @Test func hostileAdapterNeverBreaksTheService() async throws {
        let directory = try makeTemporaryDirectory("live-hostile")
        defer { try? FileManager.default.removeItem(at: directory) }
        let adapters = directory.appendingPathComponent("adapters")
        try FileManager.default.createDirectory(at: adapters, withIntermediateDirectories: true)
        let source = try SafeTensorsFile(url: Fixtures.url("lora/sd1-tiny/kohya.safetensors"))
        var tensors = try source.allTensors().mapValues { $0.copy() }
        for key in tensors.keys where key.hasSuffix(".alpha") { tensors[key] = Tensor(shape: [], values: [.nan]) }
        let hostile = directory.appendingPathComponent("hostile.safetensors")
        try SafeTensorsWriter.write(tensors, to: hostile)
        try FileManager.default.copyItem(at: hostile, to: adapters.appendingPathComponent("byhand.safetensors"))
        let configuration = ServerConfiguration(host: "127.0.0.1", port: 0, adaptersDirectory: adapters, queueDepth: 2)
        let generator = PipelineGenerator(modelDirectory: Fixtures.url("models/sd1-tiny"), adaptersDirectory: adapters,
                                          limits: configuration.limits, warmupSteps: 1)
        var logger = Logger(label: "live")
        logger.logLevel = .warning
        let service = ImageService(configuration: configuration, generator: generator,
                                   store: try TimingStore(path: directory.appendingPathComponent("t.sqlite").path), logger: logger)
        try await buildApplication(service: service, logger: logger).test(.router) { client in
            try await waitUntilReady(client, seconds: 120)
            let list = try await client.execute(uri: "/v1/adapters", method: .get)
            #expect(list.status == .ok)
            #expect(String(buffer: list.body).contains(#""format":"invalid""#), "\(String(buffer: list.body))")
            let image = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                                 body: json(["prompt": "x", "steps": 2, "adapter": "byhand"]))
            #expect(image.status == .unprocessableContent)
            #expect(decodeError(image)?.message.contains("alpha must be a finite number") == true)
            let upload = try await client.execute(uri: "/v1/adapters/uploaded", method: .put,
                                                  body: ByteBuffer(bytes: try Data(contentsOf: hostile)))
            #expect(upload.status == .unprocessableContent)
            #expect(!FileManager.default.fileExists(atPath: adapters.appendingPathComponent("uploaded.safetensors").path))
            #expect(try await client.execute(uri: "/v1/adapters", method: .get).status == .ok)
            let plain = try await client.execute(uri: "/v1/images", method: .post, headers: jsonHeaders,
                                                 body: json(["prompt": "x", "steps": 2]))
            #expect(plain.status == .ok)
        }
    }
}
