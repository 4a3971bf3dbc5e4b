import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing
@testable import HotswapServer

@Suite("Server adapter routes (fake generator)")
struct AdapterRouteTests {
    @Test func listShowUploadDelete() async throws {
        let harness = try Harness(preload: ["beta"])
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let list = try await client.execute(uri: "/v1/adapters", method: .get)
            #expect(list.status == .ok)
            struct Listing: Decodable { let adapters: [AdapterDescription] }
            let adapters = try JSONDecoder().decode(Listing.self, from: Data(buffer: list.body)).adapters
            #expect(adapters.map(\.name) == ["alpha", "beta"])
            #expect(adapters.map(\.cached) == [false, true])
            let keys = try #require(try JSONSerialization.jsonObject(with: Data(buffer: list.body)) as? [String: [[String: Any]]])
            #expect(Set(keys["adapters"]![0].keys) == ["name", "format", "type", "modes", "rank", "alpha", "targets", "size", "cached", "active"])

            let one = try await client.execute(uri: "/v1/adapters/alpha", method: .get)
            #expect(try JSONDecoder().decode(AdapterDescription.self, from: Data(buffer: one.body)).name == "alpha")
            let missing = try await client.execute(uri: "/v1/adapters/ghost", method: .get)
            #expect(missing.status == .notFound)
            #expect(decodeError(missing)?.code == "adapter_not_found")

            let created = try await client.execute(uri: "/v1/adapters/gamma.v2", method: .put,
                                                   body: ByteBuffer(string: "FAKE-LORA gamma"))
            #expect(created.status == .created)
            #expect(FileManager.default.fileExists(atPath: harness.directory.appendingPathComponent("gamma.v2.safetensors").path))
            let used = try await client.execute(uri: "/v1/images?adapter=gamma.v2", method: .post, headers: jsonHeaders,
                                                body: json(["prompt": "x"]))
            #expect(used.status == .ok)
            let replaced = try await client.execute(uri: "/v1/adapters/gamma.v2", method: .put,
                                                    body: ByteBuffer(string: "FAKE-LORA gamma 2"))
            #expect(replaced.status == .ok)

            let deleted = try await client.execute(uri: "/v1/adapters/gamma.v2", method: .delete)
            #expect(deleted.status == .noContent)
            let gone = try await client.execute(uri: "/v1/adapters/gamma.v2", method: .delete)
            #expect(gone.status == .notFound)
            let after = try await client.execute(uri: "/v1/images?adapter=gamma.v2", method: .post, headers: jsonHeaders,
                                                 body: json(["prompt": "x"]))
            #expect(after.status == .notFound)
        }
    }

    @Test func invalidOrOversizedUploadsNeverBecomeVisible() async throws {
        let harness = try Harness(maxAdapterBytes: 64)
        defer { harness.cleanup() }
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            let corrupt = try await client.execute(uri: "/v1/adapters/broken", method: .put,
                                                   body: ByteBuffer(string: "not a safetensors file"))
            #expect(corrupt.status == .unprocessableContent)
            #expect(decodeError(corrupt)?.code == "invalid_adapter")
            let big = try await client.execute(uri: "/v1/adapters/huge", method: .put,
                                               body: ByteBuffer(string: "FAKE-LORA" + String(repeating: "x", count: 100)))
            #expect(big.status == .contentTooLarge)
            let empty = try await client.execute(uri: "/v1/adapters/empty", method: .put, body: ByteBuffer())
            #expect(empty.status == .badRequest)
            // Replacing a good adapter with a bad file keeps the good one.
            let bad = try await client.execute(uri: "/v1/adapters/alpha", method: .put, body: ByteBuffer(string: "garbage"))
            #expect(bad.status == .unprocessableContent)
            let alpha = try Data(contentsOf: harness.directory.appendingPathComponent("alpha.safetensors"))
            #expect(String(decoding: alpha, as: UTF8.self) == "FAKE-LORA alpha")

            let files = try FileManager.default.contentsOfDirectory(atPath: harness.directory.path).sorted()
            #expect(files == ["alpha.safetensors", "beta.safetensors"])
            let list = try await client.execute(uri: "/v1/adapters", method: .get)
            #expect(!String(buffer: list.body).contains("broken"))
            let next = try await client.execute(uri: "/v1/images?adapter=alpha", method: .post, headers: jsonHeaders,
                                                body: json(["prompt": "x"]))
            #expect(next.status == .ok)
        }
    }

    @Test(arguments: ["..", ".", "..%2F..%2Fetc%2Fpasswd", "%2E%2E", "a%20b", "x%00y", "name%2Fslash",
                      String(repeating: "n", count: 65), "caf%C3%A9", "semi%3Bcolon"])
    func unsafeNamesAreRefused(name: String) async throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        let outside = harness.directory.deletingLastPathComponent()
        try await harness.app.test(.router) { client in
            try await waitUntilReady(client)
            for method in [HTTPRequest.Method.get, .put, .delete] {
                let response = try await client.execute(uri: "/v1/adapters/\(name)", method: method,
                                                        body: method == .put ? ByteBuffer(string: "FAKE-LORA") : nil)
                // ".." and "." may be normalised away by the router (404/405); every other name is refused by the check.
                #expect((400..<500).contains(Int(response.status.code)), "\(method) \(name): \(response.status)")
            }
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: harness.directory.path).sorted()
        #expect(files == ["alpha.safetensors", "beta.safetensors"])
        #expect(!FileManager.default.fileExists(atPath: outside.appendingPathComponent("passwd.safetensors").path))
    }

    @Test func adapterNameRules() {
        for good in ["a", "style_v2", "my-lora.1", String(repeating: "z", count: 64), ".hidden"] {
            #expect(AdapterName.isValid(good), "\(good)")
        }
        for bad in ["", ".", "..", "...", "a/b", "../x", "a b", "é", String(repeating: "z", count: 65), "a\u{0}b", "x\\y"] {
            #expect(!AdapterName.isValid(bad), "\(bad)")
        }
        let dir = URL(fileURLWithPath: "/tmp/adapters")
        #expect(AdapterName.fileURL(for: "ok", in: dir)?.path == "/tmp/adapters/ok.safetensors")
        #expect(AdapterName.fileURL(for: "..", in: dir) == nil)
    }

    /// Replicas share the adapters folder: a start removes only uploads no replica can still be writing.
    @Test func startRemovesOnlyAbandonedUploads() throws {
        let harness = try Harness()
        defer { harness.cleanup() }
        let old = harness.directory.appendingPathComponent(".upload-old.part")
        let fresh = harness.directory.appendingPathComponent(".upload-fresh.part")
        try Data("partial".utf8).write(to: old)
        try Data("partial".utf8).write(to: fresh)
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3600)], ofItemAtPath: old.path)
        harness.service.removeStaleUploads()
        #expect(!FileManager.default.fileExists(atPath: old.path))
        #expect(FileManager.default.fileExists(atPath: fresh.path))
        #expect(FileManager.default.fileExists(atPath: harness.directory.appendingPathComponent("alpha.safetensors").path))
    }
}
