import ArgumentParser
import Foundation
import HotswapCore
import HotswapLoRA
import HotswapPipeline
import HotswapStore
import HotswapServer
import Logging

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve images over HTTP, with LoRA adapters hot-swapped per request.",
        discussion: """
            Loads the base model, preloads the --preload adapters and runs one warm-up pass; /readyz answers \
            503 until then, /healthz at once. One worker runs image jobs in arrival order; SIGTERM stops taking \
            requests, finishes the running job, flushes the database and exits 0. See docs/openapi.yaml.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Folder of <name>.safetensors adapters (default: $HOTSWAP_ADAPTERS, else the embedded Models/adapters, else ./adapters).")
    var adaptersDir: String?
    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port, printed at start).") var port: Int = 8080
    @Option(help: "SQLite file for the timing rows (read by Scripts/timing-report).") var db: String = "hotswap-timings.sqlite"
    @Option(help: "Jobs that may wait while one runs; the next request gets 429.") var queueDepth: Int = 8
    @Option(help: "Largest steps a request may ask for.") var maxSteps: Int = 150
    @Option(help: "Largest width x height a request may ask for.") var maxPixels: Int = 1024 * 1024
    @Option(help: "Seconds a job may wait in the queue before it is dropped with 503 (0: no limit).")
    var requestTimeout: Double = 300
    @Option(help: "Largest adapter upload, in MiB.") var maxAdapterMb: Int = 512
    @Option(parsing: .upToNextOption, help: "Adapters to load into the cache before the server is ready.")
    var preload: [String] = []
    @Option(help: "Adapter cache size in MiB (parsed adapters kept in memory).") var cacheMb: Int = 2048
    @Option(help: "How adapters act: fuse (weights merged per swap, fast inference) or runtime (low-rank terms at every call).")
    var loraMode: String = LoRAMode.fuse.rawValue
    @Option(help: "Denoising steps of the warm-up pass.") var warmupSteps: Int = 1
    @Option(help: "Seconds a client may take to send a request's headers (slow clients are disconnected).")
    var headerTimeout: Double = 30
    @Option(help: "Seconds a client may take to send a request's body after its headers.") var bodyTimeout: Double = 120
    @Option(help: "Seconds a keep-alive connection may sit idle between requests.") var idleTimeout: Double = 60
    @Option(help: "Connections served at once; more wait until one closes.") var maxConnections: Int = 256
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String = "info"

    func validate() throws {
        guard (0...100_000).contains(queueDepth) else { throw ValidationError("--queue-depth must be in 0...100000") }
        guard (1...1000).contains(maxSteps) else { throw ValidationError("--max-steps must be in 1...1000") }
        guard maxPixels >= 64 else { throw ValidationError("--max-pixels must be at least 64") }
        guard requestTimeout.isFinite, requestTimeout >= 0 else { throw ValidationError("--request-timeout must be a number >= 0") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
        guard LoRAMode(rawValue: loraMode) != nil else { throw ValidationError("unknown --lora-mode \(loraMode)") }
        // Sizes are multiplied into bytes: bounded so that can never overflow.
        guard (0...1 << 20).contains(cacheMb) else { throw ValidationError("--cache-mb must be in 0...\(1 << 20) (MiB)") }
        guard (1...1 << 20).contains(maxAdapterMb) else { throw ValidationError("--max-adapter-mb must be in 1...\(1 << 20) (MiB)") }
        guard maxPixels <= 1 << 30 else { throw ValidationError("--max-pixels must be at most \(1 << 30)") }
        guard (1...1000).contains(warmupSteps) else { throw ValidationError("--warmup-steps must be in 1...1000") }
        for (name, value) in [("--header-timeout", headerTimeout), ("--body-timeout", bodyTimeout), ("--idle-timeout", idleTimeout)] {
            guard value.isFinite, value > 0, value <= 86_400 else { throw ValidationError("\(name) must be in (0, 86400] seconds") }
        }
        guard (1...100_000).contains(maxConnections) else { throw ValidationError("--max-connections must be in 1...100000") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        for name in preload where !AdapterName.isValid(name) {
            throw ValidationError("--preload \(name): adapter names match [A-Za-z0-9._-]{1,64}")
        }
    }

    func resolveAdaptersDirectory() -> URL {
        if let adaptersDir { return URL(fileURLWithPath: adaptersDir) }
        return EmbeddedModel.defaultAdaptersDirectory() ?? URL(fileURLWithPath: "adapters")
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            return handler
        }
        let logger = Logger(label: "hotswap.serve")
        let modelURL = try modelOptions.resolveModel()
        let adaptersURL = resolveAdaptersDirectory()
        try FileManager.default.createDirectory(at: adaptersURL, withIntermediateDirectories: true)
        let limits = RequestLimits(maxSteps: maxSteps, maxPixels: maxPixels)
        let configuration = ServerConfiguration(
            host: host, port: port, adaptersDirectory: adaptersURL, queueDepth: queueDepth,
            requestTimeout: requestTimeout, limits: limits, preload: preload, maxAdapterBytes: maxAdapterMb * 1024 * 1024,
            headerTimeout: headerTimeout, bodyTimeout: bodyTimeout, idleTimeout: idleTimeout, maxConnections: maxConnections)
        let store: TimingStore
        do {
            store = try TimingStore(path: db)
        } catch {
            throw CLIError("cannot open the timing database \(db): \(error)")
        }
        let generator = PipelineGenerator(modelDirectory: modelURL, singleFile: modelOptions.singleFileOptions,
                                          vaeDecoder: modelOptions.vaeDecoderURL, adaptersDirectory: adaptersURL,
                                          cacheLimitBytes: cacheMb * 1024 * 1024,
                                          mode: LoRAMode(rawValue: loraMode) ?? .fuse, limits: limits, warmupSteps: warmupSteps)
        let service = ImageService(configuration: configuration, generator: generator, store: store, logger: logger)
        let blas = BLASCoreSelection.outcome
        service.metrics.recordBLASCore(core: blas.core, selectedBy: blas.selectedBy, detected: blas.detected)
        logger.info("\(blas)")
        logger.info("starting", metadata: [
            "model": .string(modelURL.path), "adapters": .string(adaptersURL.path), "db": .string(db),
            "address": .string("\(host):\(port)"), "queue_depth": .stringConvertible(queueDepth),
        ])
        do {
            try await runServer(service: service, logger: logger)
        } catch {
            throw CLIError("\(error)")
        }
        logger.info("stopped")
    }
}
