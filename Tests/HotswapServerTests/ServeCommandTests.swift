import Foundation
import HotswapTestSupport
import Testing
@testable import HotswapServer
import HotswapStore

/// `hotswap serve` as a process: start on port 0, serve one image, SIGTERM, exit 0, rows flushed.
@Suite("Server command (hotswap serve process)", .serialized)
struct ServeCommandTests {
    /// The `hotswap` executable next to the test bundle (`swift test` builds it), if there.
    static var executable: URL? {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let url = candidate.appendingPathComponent("hotswap")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return nil
    }

    @Test(.enabled(if: executable != nil, "the hotswap executable is not built next to the tests"))
    func sigtermFinishesTheRunningJobFlushesAndExitsZero() async throws {
        let directory = try makeTemporaryDirectory("serve")
        defer { try? FileManager.default.removeItem(at: directory) }
        let adapters = directory.appendingPathComponent("adapters")
        try FileManager.default.createDirectory(at: adapters, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Fixtures.url("lora/sd1-tiny/kohya.safetensors"),
                                         to: adapters.appendingPathComponent("kohya.safetensors"))
        let db = directory.appendingPathComponent("timings.sqlite")

        let process = Process()
        process.executableURL = Self.executable
        process.arguments = ["serve", "--model", Fixtures.url("models/sd1-tiny").path, "--adapters-dir", adapters.path,
                             "--port", "0", "--db", db.path, "--preload", "kohya", "--queue-depth", "2"]
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        // Start on a generic OpenBLAS core: the server must choose this CPU's kernels, log it and export it.
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = "Prescott"
        environment["HOTSWAP_BLAS_CORE"] = "auto"
        process.environment = environment
        // Foundation's waitUntilExit polls a run loop, and on Linux that path raced inside
        // libdispatch (a rare crash of the test process); a termination handler does not use it.
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        // The log says where it listens and when it is ready.
        let log = LogCollector(stderr.fileHandleForReading)
        try await waitFor(seconds: 60) { log.text.contains("[HotswapServer] ready") }
        let port = try #require(log.port)
        let metrics = try await Task.detached { try rawGet(port: port, path: "/metrics") }.value
        #expect(metrics.contains("hotswap_blas_core_info{"), "\(metrics)")
        if cpuHasAVX2 {
            #expect(log.text.contains("over the detected Prescott"), "\(log.text)")
            #expect(metrics.contains(#"selected_by="auto""#) && metrics.contains(#"detected="Prescott""#), "\(metrics)")
            #expect(!metrics.contains(#"core="Prescott""#), "\(metrics)")
        }

        // One image with the adapter, through a plain socket.
        let (status, headers) = try await Task.detached {
            try rawPost(port: port, body: #"{"prompt": "a shape", "steps": 3, "seed": 5, "adapter": "kohya"}"#)
        }.value
        #expect(status == 200)
        #expect(headers["x-seed"] == "5")
        #expect(headers["x-adapter-cache"] == "hit")

        // A long job, then SIGTERM while it runs: it still answers 200 and the process exits 0.
        let long = Task.detached {
            try rawPost(port: port, body: #"{"prompt": "long", "steps": 60}"#)
        }
        try await Task.sleep(for: .milliseconds(300))
        kill(process.processIdentifier, SIGTERM)
        let (longStatus, _) = try await long.value
        #expect(longStatus == 200)
        exited.wait()
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        #expect(log.text.contains("timing database closed"))

        let store = try TimingStore(path: db.path)
        defer { store.close() }
        #expect(try store.rowCounts().requests == 2)
        #expect(try store.rowCounts().warmups == 1)
        #expect(try store.latestRequests(limit: 5).map(\.steps) == [60, 3])

        // The timing report agrees with the rows.
        let report = try runTimingReport([db.path, "--json"])
        #expect(report.status == 0, "\(report.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])
        #expect(object["requests"] as? Int == 2)
        #expect(object["starts"] as? Int == 1)
        let perAdapter = try #require(object["per_adapter"] as? [String: Any])
        #expect(Set(perAdapter.keys) == ["kohya", "(none)"])
        let table = try runTimingReport([db.path, "--adapter", "kohya"])
        #expect(table.stdout.contains("Adapter kohya: 1 request\n"))
        #expect(table.stdout.contains("base load (warm page cache)") || table.stdout.contains("base load (cold page cache)"))
    }

    @Test func timingReportRunsOnAnEmptyDatabase() throws {
        let directory = try makeTemporaryDirectory("report")
        defer { try? FileManager.default.removeItem(at: directory) }
        let db = directory.appendingPathComponent("empty.sqlite").path
        EmptyTimingDatabase.make(db)
        let report = try runTimingReport([db, "--since", "1h"])
        #expect(report.status == 0, "\(report.stderr)")
        #expect(report.stdout.contains("0 request row(s)"))
        #expect(report.stdout.contains("inference"))
        let json = try runTimingReport([db, "--json"])
        #expect(json.status == 0)
        let missing = try runTimingReport([directory.appendingPathComponent("nope.sqlite").path])
        #expect(missing.status != 0 && missing.stderr.contains("no such file"))
    }
}

enum EmptyTimingDatabase {
    static func make(_ path: String) {
        let store = try? TimingStore(path: path)
        store?.close()
    }
}

/// Runs Scripts/timing-report with the system python3 (standard library only).
func runTimingReport(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", Fixtures.repositoryRoot.appendingPathComponent("Scripts/timing-report").path] + arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    // Foundation's waitUntilExit polls a run loop, and on Linux that path raced inside
    // libdispatch (a rare crash of the test process); a termination handler does not use it.
    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    try process.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    exited.wait()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}

/// Reads a pipe in the background and keeps what it read.
final class LogCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = ""

    init(_ handle: FileHandle) {
        handle.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.buffer += String(decoding: data, as: UTF8.self) }
        }
    }

    var text: String { lock.withLock { buffer } }

    /// The port from the "listening" line (address=127.0.0.1:PORT).
    var port: Int? {
        guard let line = text.split(separator: "\n").first(where: { $0.contains("[HotswapServer] listening") }),
              let range = line.range(of: #"address=[0-9.]+:(\d+)"#, options: .regularExpression) else { return nil }
        return Int(line[range].split(separator: ":").last!)
    }
}

/// AVX2 and FMA in /proc/cpuinfo: the CPU has kernels wider than OpenBLAS' generic ones.
var cpuHasAVX2: Bool {
    let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let flags = Set((info.split(separator: "\n").first { $0.hasPrefix("flags") } ?? "").split(separator: " "))
    return flags.contains("avx2") && flags.contains("fma")
}

/// POST /v1/images over a blocking socket; returns the status and lower-cased headers.
func rawPost(port: Int, body: String) throws -> (Int, [String: String]) {
    let response = try rawExchange(port: port, request:
        "POST /v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
    let head = String(decoding: response.prefix(while: { $0 != 0x89 }), as: UTF8.self)
    let lines = head.components(separatedBy: "\r\n")
    let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return (status, headers)
}

/// GET `path` over a blocking socket; returns the whole response as text (head and body).
func rawGet(port: Int, path: String) throws -> String {
    let response = try rawExchange(port: port, request: "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    return String(decoding: response, as: UTF8.self)
}

/// Sends one request and reads until the server closes the connection.
private func rawExchange(port: Int, request: String) throws -> Data {
    try rawHTTP(port: port, bytes: Array(request.utf8), timeout: 300)
}
