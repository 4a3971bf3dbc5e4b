// GET /metrics: Prometheus text format from swift-prometheus.
import Foundation
import HotswapStore
import Prometheus

public final class ServerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    let queueSeconds: ValueHistogram
    let swapSeconds: ValueHistogram
    let inferenceSeconds: ValueHistogram
    let queueDepth: Gauge
    let ready: Gauge
    let swaps: Counter
    let loads: Counter
    private let cacheCounters: [CacheOutcome: Counter]

    /// Outcomes counted by `hotswap_requests_total{outcome=...}`.
    public enum Outcome: String, CaseIterable, Sendable {
        case ok
        case invalid            // 4xx for the request itself
        case notFound = "not_found"
        case rejected           // 429 queue full
        case timedOut = "timed_out"
        case cancelled          // client went away before the job started
        case unavailable        // not ready or shutting down
        case failed             // the engine threw
    }
    private let outcomeCounters: [Outcome: Counter]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        let secondsBuckets: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
        queueSeconds = registry.makeValueHistogram(
            descriptor: .init(namespace: "hotswap", metricName: "queue", unitName: "seconds",
                              helpText: "Time a job waited in the queue before it started"),
            buckets: secondsBuckets)
        swapSeconds = registry.makeValueHistogram(
            descriptor: .init(namespace: "hotswap", metricName: "swap", unitName: "seconds",
                              helpText: "Time spent unloading, loading and applying adapters for a job"),
            buckets: secondsBuckets)
        inferenceSeconds = registry.makeValueHistogram(
            descriptor: .init(namespace: "hotswap", metricName: "inference", unitName: "seconds",
                              helpText: "Text encoding, denoising and VAE decoding time of a job"),
            buckets: secondsBuckets)
        queueDepth = registry.makeGauge(
            descriptor: .init(namespace: "hotswap", metricName: "queue_depth", unitName: "",
                              helpText: "Jobs waiting in the queue (the running one not counted)"))
        ready = registry.makeGauge(
            descriptor: .init(namespace: "hotswap", metricName: "ready", unitName: "",
                              helpText: "1 once the base model is loaded and warmed up"))
        swaps = registry.makeCounter(
            descriptor: .init(namespace: "hotswap", metricName: "adapter_swaps", unitName: "total",
                              helpText: "Jobs that changed the active adapter set"))
        loads = registry.makeCounter(
            descriptor: .init(namespace: "hotswap", metricName: "adapter_loads", unitName: "total",
                              helpText: "Adapter files read from disk into this replica's cache (one per adapter that missed the cache)"))
        var cache: [CacheOutcome: Counter] = [:]
        for result in [CacheOutcome.hit, .miss, .reuse, .none] {
            cache[result] = registry.makeCounter(
                descriptor: .init(namespace: "hotswap", metricName: "adapter_cache", unitName: "total",
                                  helpText: "Adapter activations by cache result"),
                labels: [("result", result.rawValue)])
        }
        cacheCounters = cache
        var outcomes: [Outcome: Counter] = [:]
        for outcome in Outcome.allCases {
            outcomes[outcome] = registry.makeCounter(
                descriptor: .init(namespace: "hotswap", metricName: "requests", unitName: "total",
                                  helpText: "Image requests by outcome"),
                labels: [("outcome", outcome.rawValue)])
        }
        outcomeCounters = outcomes
    }

    /// `hotswap_blas_core_info{core, selected_by, detected} 1`: which OpenBLAS kernels run, and
    /// whether they were chosen for this CPU over what OpenBLAS detected (timings depend on it).
    public func recordBLASCore(core: String, selectedBy: String, detected: String?) {
        registry.makeGauge(
            descriptor: .init(namespace: "hotswap", metricName: "blas_core_info", unitName: "",
                              helpText: "OpenBLAS kernel family in use (selected_by: openblas, user or auto)"),
            labels: [("core", core), ("selected_by", selectedBy), ("detected", detected ?? core)]
        ).set(to: 1)
    }

    func count(_ outcome: Outcome) {
        outcomeCounters[outcome]?.increment()
    }

    /// A job that produced an image: its queue, swap and inference times and its cache result.
    func recordJob(_ record: RequestRecord) {
        let swap = record.swap ?? SwapReport(cache: .none)
        queueSeconds.record((record.queueMs ?? 0) / 1000)
        swapSeconds.record(swap.totalMs / 1000)
        inferenceSeconds.record((record.generation?.inferenceMs ?? 0) / 1000)
        cacheCounters[swap.cache]?.increment()
        if swap.changedWeights { swaps.increment() }
        let missed = swap.outcomes.isEmpty ? (swap.cache == .miss ? 1 : 0) : swap.outcomes.filter { $0 == .miss }.count
        if missed > 0 { loads.increment(by: Int64(missed)) }
    }

    func recordQueueWait(ms: Double) {
        queueSeconds.record(ms / 1000)
    }

    public func text() -> String {
        registry.emitToString()
    }
}
