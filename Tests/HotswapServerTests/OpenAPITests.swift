import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import HotswapTestSupport
import Testing
@testable import HotswapServer

@Suite("Server OpenAPI document")
struct OpenAPITests {
    /// "METHOD /path" for every operation under `paths:` (two-space path keys, four-space methods).
    static func documentedRoutes() throws -> Set<String> {
        let text = try String(contentsOf: Fixtures.repositoryRoot.appendingPathComponent("docs/openapi.yaml"), encoding: .utf8)
        var routes = Set<String>()
        var inPaths = false
        var path: String?
        let methods: Set<String> = ["get", "put", "post", "delete", "patch", "head", "options"]
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if !line.hasPrefix(" ") && !line.isEmpty {
                inPaths = line.hasPrefix("paths:")
                continue
            }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), let path {
                let key = line.dropFirst(4).split(separator: ":").first.map(String.init) ?? ""
                if methods.contains(key) { routes.insert("\(key.uppercased()) \(path)") }
            }
        }
        return routes
    }

    @Test func documentListsExactlyTheServerRoutes() throws {
        let documented = try Self.documentedRoutes()
        #expect(!documented.isEmpty)
        #expect(documented == Set(serverRoutes),
                "undocumented: \(Set(serverRoutes).subtracting(documented).sorted()); not served: \(documented.subtracting(serverRoutes).sorted())")
    }

    /// Each listed route is really routed: the router's own 404/405 never answers it.
    @Test func everyListedRouteIsServed() async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            // A finished asynchronous job, for the /v1/jobs/{id} routes.
            let accepted = try await client.execute(uri: "/v1/images?async=true", method: .post, headers: jsonHeaders,
                                                    body: json(["prompt": "x", "steps": 2]))
            #expect(accepted.status == .accepted)
            let job = try #require(accepted.headers[HTTPField.Name("X-Job-Id")!])
            try await waitFor { harness.service.jobs.status(job)?.state == .done }
            for route in serverRoutes {
                let parts = route.split(separator: " ")
                let method = HTTPRequest.Method(String(parts[0]))!
                let uri = parts[1].replacingOccurrences(of: "{name}", with: "alpha").replacingOccurrences(of: "{model}", with: "alpha")
                    .replacingOccurrences(of: "{id}", with: job)
                let body: ByteBuffer? = switch method {
                case .post: json(["prompt": "x"])
                case .put: ByteBuffer(string: "FAKE-LORA alpha")
                default: nil
                }
                let response = try await client.execute(uri: uri, method: method, headers: jsonHeaders, body: body)
                #expect(response.status.kind == .successful, "\(route): \(response.status)")
            }
            let wrongMethod = try await client.execute(uri: "/v1/images", method: .get)
            #expect(wrongMethod.status == .methodNotAllowed)
            #expect(wrongMethod.headers[.allow] == "POST")
            let wrongOnAdapter = try await client.execute(uri: "/v1/adapters/alpha", method: .post)
            #expect(wrongOnAdapter.headers[.allow] == "GET, PUT, DELETE")
            let unknown = try await client.execute(uri: "/v1/nothing", method: .get)
            #expect(unknown.status == .notFound)
        }
    }
}
