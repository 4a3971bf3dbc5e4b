// Every image job the server accepted, by id: where it is (queued, running step k of n, done,
// failed), for GET /v1/jobs/{id} and GET /sdapi/v1/progress, and the images of asynchronous jobs
// until their client fetches them.
import Foundation
import HotswapPipeline

/// One job as clients see it (`GET /v1/jobs/{id}`).
public struct JobStatus: Sendable, Encodable {
    public enum State: String, Sendable, Encodable {
        case queued, running, done, failed
    }
    public var id: String
    /// Which API submitted it: "images", "a1111" or "openai".
    public var api: String
    public var state: State
    /// Images the job renders (A1111 batch_size x n_iter, OpenAI n); 1 for /v1/images.
    public var images: Int
    /// Images finished so far.
    public var imagesDone: Int
    /// Denoising step reached in the image being rendered, of `steps`.
    public var step: Int
    public var steps: Int
    /// Jobs ahead of this one in the queue (queued only).
    public var queuePosition: Int?
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    /// Why it failed.
    public var error: APIError?
    /// Whether the job's images are kept for `GET /v1/jobs/{id}/image`.
    public var keepsImages: Bool
    /// The query that routes a follow-up request (status, image) through a hashing balancer to the
    /// replica holding this job: `adapter=NAME` or `route=KEY` (deploy/nginx/hotswap.conf); nil
    /// when the request came without either.
    public var route: String?

    /// `path` with the job's routing query and `extra` query items.
    public func url(_ path: String, _ extra: [String] = []) -> String {
        let items = (route.map { [$0] } ?? []) + extra
        return items.isEmpty ? path : path + "?" + items.joined(separator: "&")
    }

    /// 0...1 over all its images and steps.
    public var progress: Double {
        switch state {
        case .done: return 1
        case .queued: return 0
        case .failed, .running:
            let perImage = steps > 0 ? Double(step) / Double(steps) : 0
            return min(1, (Double(imagesDone) + perImage) / Double(max(images, 1)))
        }
    }

    enum CodingKeys: String, CodingKey {
        case id, api, state, images, imagesDone = "images_done", step, steps, queuePosition = "queue_position"
        case progress, createdAt = "created_at", startedAt = "started_at", finishedAt = "finished_at", error, imageURL = "image_url"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(api, forKey: .api)
        try c.encode(state, forKey: .state)
        try c.encode(images, forKey: .images)
        try c.encode(imagesDone, forKey: .imagesDone)
        try c.encode(step, forKey: .step)
        try c.encode(steps, forKey: .steps)
        try c.encode(progress, forKey: .progress)
        try c.encodeIfPresent(queuePosition, forKey: .queuePosition)
        try c.encode(createdAt.timeIntervalSince1970, forKey: .createdAt)
        try c.encodeIfPresent(startedAt?.timeIntervalSince1970, forKey: .startedAt)
        try c.encodeIfPresent(finishedAt?.timeIntervalSince1970, forKey: .finishedAt)
        if let error { try c.encode(APIError.Body.Inner(code: error.code, message: error.message, field: error.field), forKey: .error) }
        if state == .done && keepsImages { try c.encode(url("/v1/jobs/\(id)/image"), forKey: .imageURL) }
    }
}

public final class JobRegistry: @unchecked Sendable {
    /// Finished jobs remembered (the oldest are forgotten first).
    public let retainedJobs: Int
    /// Bytes of finished images kept for asynchronous clients (the oldest are dropped first).
    public let retainedImageBytes: Int

    private final class Entry {
        var status: JobStatus
        var rendered: [RenderedImage] = []
        /// Set by POST /sdapi/v1/interrupt: the running step loop stops at its next step.
        var interrupted = false
        init(_ status: JobStatus) { self.status = status }
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]        // guarded by lock
    private var order: [String] = []                   // ids, oldest first; guarded by lock
    private var runningID: String?                     // guarded by lock

    public init(retainedJobs: Int = 256, retainedImageBytes: Int = 256 << 20) {
        self.retainedJobs = retainedJobs
        self.retainedImageBytes = retainedImageBytes
    }

    /// Registers a job about to be queued; returns its id.
    public func create(api: String, images: Int, steps: Int, keepsImages: Bool, route: String? = nil) -> String {
        let id = UUID().uuidString.lowercased()
        let status = JobStatus(id: id, api: api, state: .queued, images: images, imagesDone: 0, step: 0, steps: steps,
                               createdAt: Date(), keepsImages: keepsImages, route: route)
        lock.withLock {
            entries[id] = Entry(status)
            order.append(id)
            trim()
        }
        return id
    }

    /// The worker took the job.
    public func started(_ id: String) {
        lock.withLock {
            guard let entry = entries[id] else { return }
            entry.status.state = .running
            entry.status.startedAt = Date()
            runningID = id
        }
    }

    /// A denoising step finished; false when the job was interrupted (the render then stops).
    public func progress(_ id: String, step: Int, of steps: Int) -> Bool {
        lock.withLock {
            guard let entry = entries[id] else { return true }
            entry.status.step = step
            entry.status.steps = steps
            return !entry.interrupted
        }
    }

    /// One of the job's images is finished.
    public func imageDone(_ id: String, _ image: RenderedImage) {
        lock.withLock {
            guard let entry = entries[id] else { return }
            entry.status.imagesDone += 1
            entry.status.step = 0
            if entry.status.keepsImages { entry.rendered.append(image) }
        }
    }

    public func finished(_ id: String) {
        lock.withLock {
            guard let entry = entries[id] else { return }
            entry.status.state = .done
            entry.status.finishedAt = Date()
            if runningID == id { runningID = nil }
            trim()
        }
    }

    public func failed(_ id: String, _ error: APIError) {
        lock.withLock {
            guard let entry = entries[id] else { return }
            entry.status.state = .failed
            entry.status.error = error
            entry.status.finishedAt = Date()
            entry.rendered = []
            if runningID == id { runningID = nil }
            trim()
        }
    }

    /// A job's status, with its place in the queue when it waits.
    public func status(_ id: String) -> JobStatus? {
        lock.withLock {
            guard var status = entries[id]?.status else { return nil }
            if status.state == .queued {
                status.queuePosition = order.lazy.compactMap { self.entries[$0]?.status }
                    .filter { $0.state == .queued && $0.createdAt < status.createdAt }.count
            }
            return status
        }
    }

    /// The images of a finished job (empty when it kept none, or they were dropped for space).
    public func images(_ id: String) -> [RenderedImage] {
        lock.withLock { entries[id]?.rendered ?? [] }
    }

    /// The job the worker is running now.
    public var running: JobStatus? {
        lock.withLock { runningID.flatMap { entries[$0]?.status } }
    }

    /// Jobs accepted and not finished (running and queued).
    public var pendingCount: Int {
        lock.withLock { entries.values.filter { $0.status.state == .queued || $0.status.state == .running }.count }
    }

    /// Asks the running job to stop at its next step; returns its id, or nil when none runs.
    @discardableResult
    public func interruptRunning() -> String? {
        lock.withLock {
            guard let id = runningID, let entry = entries[id] else { return nil }
            entry.interrupted = true
            return id
        }
    }

    /// Whether the job was interrupted (its render stopped early on request, not because it failed).
    public func wasInterrupted(_ id: String) -> Bool {
        lock.withLock { entries[id]?.interrupted ?? false }
    }

    /// Forgets the oldest finished jobs beyond `retainedJobs` and drops the oldest kept images
    /// beyond `retainedImageBytes`. Called under the lock.
    private func trim() {
        let finished = order.filter { id in entries[id].map { $0.status.state == .done || $0.status.state == .failed } ?? false }
        var excess = finished.count - retainedJobs
        for id in finished where excess > 0 {
            entries[id] = nil
            excess -= 1
        }
        order.removeAll { entries[$0] == nil }
        var bytes = 0
        for id in order.reversed() {
            guard let entry = entries[id], !entry.rendered.isEmpty else { continue }
            let size = entry.rendered.reduce(0) { $0 + $1.png.count }
            if bytes + size > retainedImageBytes && entry.status.state == .done {
                entry.rendered = []
                entry.status.keepsImages = false
            } else {
                bytes += size
            }
        }
    }
}
