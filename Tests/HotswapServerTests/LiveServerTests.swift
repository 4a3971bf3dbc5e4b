import Foundation
import HTTPTypes
import HotswapPipeline
import Hummingbird
import HummingbirdTesting
import Logging
import Testing
@testable import HotswapServer

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
        let recorder = try SQLiteTimingRecorder(path: dbPath)
        let generator = PipelineGenerator(modelDirectory: Fixtures.url("models/sd1-tiny"),
                                          adapters: makeAdapterBackend(adaptersDirectory: adapters), warmupSteps: 1)
        var logger = Logger(label: "live")
        logger.logLevel = .warning
        let service = ImageService(
            configuration: ServerConfiguration(host: "127.0.0.1", port: 0, adaptersDirectory: adapters, queueDepth: 2),
            generator: generator, recorder: recorder, logger: logger)
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

            let timings = try await client.execute(uri: "/v1/timings", method: .get)
            let rows = try #require(try JSONSerialization.jsonObject(with: Data(buffer: timings.body)) as? [String: Any])
            #expect((rows["requests"] as? [Any])?.count == 2)
        }

        // The database was flushed and closed at shutdown; read it back.
        let reopened = try SQLiteTimingRecorder(path: dbPath)
        defer { reopened.close() }
        let rows = try reopened.latestRequests(limit: 10)
        #expect(rows.count == 2)
        #expect(rows.last?.seed == 1234)
        #expect(rows.last?.width == 64 && rows.last?.height == 48 && rows.last?.steps == 3)
        #expect(rows.allSatisfy { $0.outcome == "ok" && $0.status == 200 && $0.inferenceMs > 0 && $0.cache == "none" })
        let counts = try reopened.rowCounts()
        #expect(counts.warmups == 1)
        #expect(counts.requests == 2)
    }
}
