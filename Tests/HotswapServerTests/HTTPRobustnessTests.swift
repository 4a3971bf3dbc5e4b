import Foundation
import HotswapTestSupport
import Hummingbird
import HummingbirdTesting
import Testing
@testable import HotswapServer

/// Malformed HTTP against a live server (fake engine) on loopback: framing errors are 400s, never
/// 500s, and the server keeps serving. The fuzz test mutates whole raw requests.
@Suite("HTTP robustness (live, fake generator)", .serialized)
struct HTTPRobustnessTests {
    static let body = #"{"prompt": "x", "steps": 2, "adapter": "alpha"}"#

    /// The framing crashers of the reliability review, kept as regressions.
    @Test func malformedFramingIsABadRequest() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.live) { client in
            try await waitUntilReady(client)
            let port = try #require(client.port)
            let cases: [(String, Bool)] = [
                ("POST /v1/images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false),
                ("POST /v1/images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", false),
                ("POST /v1/images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n\(Self.body)", false),
                ("POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n\(Self.body)", true),
            ]
            for (request, halfClose) in cases {
                let response = try await rawHTTPOffPool(port: port, bytes: Array(request.utf8), timeout: 30, halfClose: halfClose)
                // A body cut short by a half-close: a 400, or (when the end of input reaches the
                // server before the route reads the body) a close without an answer; never a 500.
                let status = statusCode(response)
                #expect(status == 400 || (halfClose && status == nil),
                        "\(request.debugDescription) -> \(String(decoding: response.prefix(300), as: UTF8.self))")
            }
            let health = try await client.execute(uri: "/healthz", method: .get)
            #expect(health.status == .ok)
        }
    }

    /// A client that never finishes its headers (slowloris) is disconnected after --header-timeout.
    @Test func slowHeadersAreCutOff() async throws {
        let harness = try Harness(headerTimeout: 0.5)
        defer { harness.cleanup() }
        try await harness.app.test(.live) { client in
            try await waitUntilReady(client)
            let port = try #require(client.port)
            let start = Date()
            let response = try await rawHTTPOffPool(port: port, bytes: Array("POST /v1/images HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8),
                                                    timeout: 20)
            let waited = Date().timeIntervalSince(start)
            #expect(response.isEmpty && waited < 10, "closed after \(waited) s with \(response.count) bytes")
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
        }
    }

    @Test(.enabled(if: FuzzBudget.enabled, "set HOTSWAP_FUZZ_SECONDS to run the fuzzers"))
    func mutatedRequestsNeverGet500OrStopTheServer() async throws {
        let budget = try #require(FuzzBudget.fromEnvironment)
        let harness = try Harness(queueDepth: 2)
        defer { harness.cleanup() }
        let seeds: [String] = [
            "POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(Self.body.utf8.count)\r\n\r\n\(Self.body)",
            "POST /v1/images?adapter=beta HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nContent-Length: 63\r\n\r\n{\"prompt\": \"y\", \"adapters\": [{\"name\": \"beta\", \"scale\": 0.5}]}  ",
            "POST /v1/images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"prompt\": \"z\"} \r\n0\r\n\r\n",
            "PUT /v1/adapters/gamma HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\nFAKE-LORA gamm",
            "GET /v1/timings?limit=5 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /v1/adapters/alpha HTTP/1.1\r\nHost: x\r\n\r\n",
            "DELETE /v1/adapters/nosuch HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Length: 85\r\n\r\n{\"prompt\": \"a <lora:alpha:0.5>\", \"steps\": 2, \"sampler_name\": \"DPM++ 2M\", \"n_iter\": 2}",
            "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Length: 57\r\n\r\n{\"prompt\": \"b\", \"model\": \"beta\", \"n\": 2, \"size\": \"64x64\"}",
            "GET /sdapi/v1/progress?skip_current_image=true HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /v1/images?async=true HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{\"prompt\": \"c\"}",
            "GET /v1/jobs/x/image?index=0 HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        var rng = SeededGenerator(seed: budget.seed)
        var statuses: [Int: Int] = [:]
        var inputs = 0
        try await harness.app.test(.live) { client in
            try await waitUntilReady(client)
            let port = try #require(client.port)
            let deadline = Date().addingTimeInterval(budget.seconds)
            while Date() < deadline {
                let mutant = Mutator.mutate(Array(seeds.randomElement(using: &rng)!.utf8), using: &rng)
                inputs += 1
                let response = try await rawHTTPOffPool(port: port, bytes: mutant, timeout: 0.5, halfClose: true)
                let status = statusCode(response) ?? 0
                statuses[status, default: 0] += 1
                if status >= 500 && status != 503 {
                    Issue.record("seed \(budget.seed), input \(inputs): \(status) for \(String(decoding: mutant, as: UTF8.self).debugDescription) -> \(String(decoding: response.prefix(400), as: UTF8.self))")
                }
                if inputs % 25 == 0 {
                    #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
                    #expect(try await client.execute(uri: "/v1/adapters", method: .get).status == .ok)
                }
            }
            #expect(try await client.execute(uri: "/v1/adapters", method: .get).status == .ok)
        }
        print("http fuzz: seed \(budget.seed), \(inputs) inputs in \(Int(budget.seconds)) s, statuses \(statuses.sorted { $0.key < $1.key })")
        #expect(inputs > 0)
    }
}
