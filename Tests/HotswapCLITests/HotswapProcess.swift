import Foundation

/// Runs the built `hotswap` binary the way a user does.
enum HotswapProcess {
    /// The hotswap executable next to this test binary (SwiftPM builds both into one folder).
    static var binary: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("hotswap")
    }

    struct Result { let status: Int32; let stdout: String; let stderr: String }

    /// `environment` entries are set (a nil value removes the variable) on top of this process' own.
    static func run(_ arguments: [String], environment: [String: String?] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let output = Pipe()
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = output
        // Foundation's waitUntilExit polls a run loop, and on Linux that path raced inside
        // libdispatch (a rare crash of the test process); a termination handler does not use it.
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        // Read stderr on another thread so neither pipe can fill up and block the child.
        let errorData = LockedData()
        let readErrors = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            errorData.value = errors.fileHandleForReading.readDataToEndOfFile()
            readErrors.signal()
        }
        let outData = output.fileHandleForReading.readDataToEndOfFile()
        readErrors.wait()
        exited.wait()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errorData.value, as: UTF8.self))
    }
}

private final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    var value: Data {
        get { lock.withLock { data } }
        set { lock.withLock { data = newValue } }
    }
}
