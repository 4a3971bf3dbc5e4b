import Foundation
import HotswapPipeline

/// Everything `hotswap serve` is told on its command line (bar the model, which the generator owns).
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The folder holding `<name>.safetensors` adapter files.
    public var adaptersDirectory: URL
    /// Jobs that may wait while one runs; the next one gets 429.
    public var queueDepth: Int
    /// A job waiting longer than this (seconds) is dropped with 503; 0 waits forever.
    public var requestTimeout: TimeInterval
    /// The server's --max-steps and --max-pixels, checked by the engine's one validator.
    public var limits: RequestLimits
    /// Adapters loaded into the cache before the server reports ready.
    public var preload: [String]
    /// Largest JSON body of POST /v1/images.
    public var maxBodyBytes: Int
    /// Largest adapter upload (PUT /v1/adapters/{name}).
    public var maxAdapterBytes: Int
    /// Seconds a connection may take to send a request's headers, and then its body.
    public var headerTimeout: Double
    public var bodyTimeout: Double
    /// Seconds a keep-alive connection may sit idle between requests.
    public var idleTimeout: Double
    /// Open connections accepted at once; more wait in the listen backlog.
    public var maxConnections: Int

    public init(host: String = "127.0.0.1", port: Int = 8080, adaptersDirectory: URL,
                queueDepth: Int = 8, requestTimeout: TimeInterval = 300, limits: RequestLimits = RequestLimits(maxSteps: 150, maxPixels: 1024 * 1024),
                preload: [String] = [], maxBodyBytes: Int = 64 * 1024, maxAdapterBytes: Int = 512 * 1024 * 1024,
                headerTimeout: Double = 30, bodyTimeout: Double = 120, idleTimeout: Double = 60, maxConnections: Int = 256) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.host = host
        self.port = port
        self.adaptersDirectory = adaptersDirectory
        self.queueDepth = queueDepth
        self.requestTimeout = requestTimeout
        self.limits = limits
        self.preload = preload
        self.maxBodyBytes = maxBodyBytes
        self.maxAdapterBytes = maxAdapterBytes
    }
}
