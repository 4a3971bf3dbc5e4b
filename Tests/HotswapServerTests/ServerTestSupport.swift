import Foundation
import HTTPTypes
import Hummingbird
import HotswapTestSupport
import HummingbirdTesting
import Logging
import Testing
@testable import HotswapServer
import HotswapPipeline
import HotswapStore

/// A fresh temporary directory, removed by the caller with `cleanup`.
func makeTemporaryDirectory(_ label: String = "server") throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// One server under test: the fake engine, a timing database and the adapters in a temporary folder.
struct Harness {
    let directory: URL
    let fake: FakeGenerator
    let store: TimingStore
    /// The timing database, outside the adapters folder.
    let databasePath: String
    let service: ImageService

    init(queueDepth: Int = 4, requestTimeout: TimeInterval = 30, maxSteps: Int = 50, maxPixels: Int = 512 * 512,
         maxAdapterBytes: Int = 4096, adapters: [String] = ["alpha", "beta"], preload: [String] = [],
         warmupGate: DispatchSemaphore? = nil, headerTimeout: Double = 30) throws {
        directory = try makeTemporaryDirectory()
        for name in adapters {
            try Data("FAKE-LORA \(name)".utf8).write(to: directory.appendingPathComponent(name + ".safetensors"))
        }
        let limits = RequestLimits(maxSteps: maxSteps, maxPixels: maxPixels)
        fake = FakeGenerator(adaptersDirectory: directory, limits: limits, warmupGate: warmupGate)
        databasePath = try makeTemporaryDirectory("timings").appendingPathComponent("timings.sqlite").path
        store = try TimingStore(path: databasePath)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        service = ImageService(
            configuration: ServerConfiguration(adaptersDirectory: directory, queueDepth: queueDepth,
                                               requestTimeout: requestTimeout,
                                               limits: limits,
                                               preload: preload, maxBodyBytes: 4096, maxAdapterBytes: maxAdapterBytes,
                                               headerTimeout: headerTimeout),
            generator: fake, store: store, logger: logger)
    }

    var app: some ApplicationProtocol {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return buildApplication(service: service, logger: logger)
    }

    /// The request rows written so far, oldest first.
    /// Read through a connection of their own (the server closes its store at shutdown).
    var requestRows: [RequestRecord] { ((try? TimingStore(path: databasePath).latestRequests(limit: 10_000)) ?? []).reversed() }
    var warmupRows: [WarmupRecord] { ((try? TimingStore(path: databasePath).latestWarmups(limit: 10_000)) ?? []).reversed() }

    func cleanup() {
        store.close()
        try? FileManager.default.removeItem(at: directory)
        try? FileManager.default.removeItem(at: URL(fileURLWithPath: databasePath).deletingLastPathComponent())
    }
}

/// Polls /readyz until it answers 200 (at most `seconds`).
func waitUntilReady(_ client: some TestClientProtocol, seconds: Double = 60) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        let response = try await client.execute(uri: "/readyz", method: .get)
        if response.status == .ok { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("server never became ready")
}

func json(_ object: Any) -> ByteBuffer {
    ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object))
}

/// The decoded `{"error": {...}}` body.
struct ErrorBody: Decodable {
    struct Inner: Decodable {
        let code: String
        let message: String
        let field: String?
    }
    let error: Inner
}

func decodeError(_ response: TestResponse, sourceLocation: SourceLocation = #_sourceLocation) -> ErrorBody.Inner? {
    let data = Data(buffer: response.body)
    do {
        return try JSONDecoder().decode(ErrorBody.self, from: data).error
    } catch {
        Issue.record("not an error body: \(String(decoding: data, as: UTF8.self))", sourceLocation: sourceLocation)
        return nil
    }
}

let jsonHeaders: HTTPFields = [.contentType: "application/json"]

/// Polls `condition` every 5 ms for at most `seconds` (generous: under the parallel test load,
/// blocking renders in other suites can hold both cooperative threads for more than 10 s).
func waitFor(seconds: Double = 120, _ condition: @Sendable () -> Bool, sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        guard Date() < deadline else {
            Issue.record("condition not met in \(seconds) s", sourceLocation: sourceLocation)
            return
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

/// A TCP socket connected to 127.0.0.1:`port` (the caller closes it).
func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    return fd
}

/// Sends raw bytes to 127.0.0.1:`port` (optionally half-closing after them) and reads until the
/// server closes the connection or `timeout` seconds pass without data.
func rawHTTP(port: Int, bytes: [UInt8], timeout: Double, halfClose: Bool = false) throws -> Data {
    let fd = try connectLoopback(port: port)
    defer { close(fd) }
    var wait = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
    // MSG_NOSIGNAL: a server that closed early must not kill the test process with SIGPIPE.
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    if halfClose { shutdown(fd, Int32(SHUT_WR)) }
    var response = Data()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &chunk, chunk.count, 0)
        if n <= 0 { break }
        response.append(contentsOf: chunk[0..<n])
    }
    return response
}

/// `rawHTTP` on a thread of its own: a blocking socket read must not hold one of the few threads
/// of Swift concurrency's pool (2 on this machine), which the suites running beside it need.
func rawHTTPOffPool(port: Int, bytes: [UInt8], timeout: Double, halfClose: Bool = false) async throws -> Data {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread {
            continuation.resume(with: Result { try rawHTTP(port: port, bytes: bytes, timeout: timeout, halfClose: halfClose) })
        }
    }
}

/// The status code of a raw HTTP response (nil when none came).
func statusCode(_ response: Data) -> Int? {
    let line = String(decoding: response.prefix(while: { $0 != 0x0d }), as: UTF8.self)
    guard line.hasPrefix("HTTP/1.") else { return nil }
    return Int(line.split(separator: " ").dropFirst().first ?? "")
}
