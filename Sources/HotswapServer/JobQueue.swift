// One worker thread running jobs in arrival order from a bounded queue.
//
// The generation is CPU-bound and drives OpenBLAS threads, so it runs on a dedicated Thread — not
// on the NIO event loops, not on the cooperative pool. Callers await results through checked
// continuations; the event loops stay free to answer /healthz and 429s while a job runs.
import Foundation
import HotswapStore

/// Why a job never ran (or why it could not be queued).
public enum JobQueueError: Error, Equatable, Sendable {
    /// The queue already holds `depth` waiting jobs.
    case full(depth: Int)
    /// The job waited longer than the request timeout.
    case timedOut(waitedMs: Double)
    /// The client went away (or the task was cancelled) before the job started.
    case cancelled
    /// The service is shutting down.
    case shuttingDown
}

/// A job's result plus how long it waited.
public struct JobResult<Value: Sendable>: Sendable {
    public var value: Value
    public var queueMs: Double
}

/// A handle to cancel a queued job (when its client disconnects).
public final class JobTicket: @unchecked Sendable {
    fileprivate let id: UInt64
    fileprivate weak var queue: JobQueue?
    private let lock = NSLock()
    private var _cancelled = false

    fileprivate init(id: UInt64, queue: JobQueue) {
        self.id = id
        self.queue = queue
    }

    /// True once the client is gone: a running job may poll it to stop early.
    public var isCancelled: Bool { lock.withLock { _cancelled } }

    /// Drops the job if it has not started; marks it cancelled either way.
    public func cancel() {
        lock.withLock { _cancelled = true }
        queue?.cancel(id: id)
    }
}

public final class JobQueue: @unchecked Sendable {
    /// How many jobs may wait (the running one not counted).
    public let depth: Int
    /// How long a job may wait before it is dropped.
    public let timeout: TimeInterval

    private final class Job {
        let id: UInt64
        /// Time since the job entered the queue.
        let enqueued: Stopwatch
        /// Warm-up: never times out.
        let exclusive: Bool
        let work: () -> Void            // runs on the worker thread; resumes the continuation itself
        let fail: (JobQueueError) -> Void
        init(id: UInt64, enqueued: Stopwatch, exclusive: Bool = false, work: @escaping () -> Void,
             fail: @escaping (JobQueueError) -> Void) {
            self.id = id
            self.enqueued = enqueued
            self.exclusive = exclusive
            self.work = work
            self.fail = fail
        }
    }

    private let condition = NSCondition()
    private var pending: [Job] = []           // guarded by condition
    private var runningID: UInt64?            // guarded by condition
    private var nextID: UInt64 = 1            // guarded by condition
    private var accepting = true              // guarded by condition
    private var stopped = false               // guarded by condition
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    private let timerQueue = DispatchQueue(label: "hotswap.jobqueue.timeouts")

    /// Called (under no lock) whenever the number of waiting jobs changes.
    public var onDepthChange: (@Sendable (Int) -> Void)?

    public init(depth: Int, timeout: TimeInterval, name: String = "hotswap-worker") {
        precondition(depth >= 0)
        self.depth = depth
        self.timeout = timeout
        // Named from inside: on Linux, setting `name` before `start` renames the calling thread.
        let thread = Thread { [unowned self] in
            Thread.current.name = name
            self.loop()
        }
        thread.stackSize = 16 << 20
        self.thread = thread
        thread.start()
    }

    /// Waiting jobs (not counting the running one).
    public var waiting: Int { condition.withLock { pending.count } }
    /// Whether a job is running now.
    public var busy: Bool { condition.withLock { runningID != nil } }

    /// Runs `work` on the worker thread, bypassing the queue limit and the timeout (warm-up).
    public func runExclusive<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let job = condition.withLock { () -> Job? in
                guard !stopped else { return nil }
                let id = nextID
                nextID += 1
                let job = Job(id: id, enqueued: Stopwatch(), exclusive: true,
                              work: { continuation.resume(with: Result { try work() }) },
                              fail: { continuation.resume(throwing: $0) })
                pending.insert(job, at: 0)
                condition.signal()
                return job
            }
            if job == nil { continuation.resume(throwing: JobQueueError.shuttingDown) }
        }
    }

    /// Queues `work`; throws `JobQueueError.full` at once when `depth` jobs already wait.
    /// `ticketHandler` receives the ticket before the caller starts waiting, so a disconnect
    /// handler can cancel the job.
    public func submit<T: Sendable>(ticketHandler: (JobTicket) -> Void = { _ in },
                                    _ work: @escaping @Sendable (JobTicket) throws -> T) async throws -> JobResult<T> {
        // Reserve the slot first, so the 429 does not depend on scheduling.
        let reservation: Result<JobTicket, JobQueueError> = condition.withLock {
            guard accepting, !stopped else { return .failure(.shuttingDown) }
            guard pending.count < depth else { return .failure(.full(depth: depth)) }
            let id = nextID
            nextID += 1
            return .success(JobTicket(id: id, queue: self))
        }
        let ticket = try reservation.get()
        ticketHandler(ticket)
        let enqueued = Stopwatch()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JobResult<T>, Error>) in
                let job = Job(id: ticket.id, enqueued: enqueued, work: {
                    let queueMs = enqueued.elapsedMs
                    continuation.resume(with: Result { JobResult(value: try work(ticket), queueMs: queueMs) })
                }, fail: { continuation.resume(throwing: $0) })
                let refusal: JobQueueError? = condition.withLock {
                    if !accepting || stopped { return .shuttingDown }
                    if ticket.isCancelled { return .cancelled }
                    // The slot was reserved above; a burst can still overshoot by the jobs that
                    // reserved concurrently, so check again.
                    if pending.count >= depth { return .full(depth: depth) }
                    pending.append(job)
                    condition.signal()
                    return nil
                }
                if let refusal {
                    continuation.resume(throwing: refusal)
                    return
                }
                notifyDepth()
                if timeout > 0 {
                    timerQueue.asyncAfter(deadline: .now() + timeout) { [weak self] in
                        self?.expire(id: ticket.id)
                    }
                }
            }
        } onCancel: {
            ticket.cancel()
        }
    }

    /// Stops taking jobs and fails every waiting one with `.shuttingDown`; the running job goes on.
    public func beginShutdown() {
        let dropped: [Job] = condition.withLock {
            accepting = false
            let jobs = pending.filter { !$0.exclusive }
            pending.removeAll { !$0.exclusive }
            return jobs
        }
        for job in dropped { job.fail(.shuttingDown) }
        notifyDepth()
    }

    /// Waits for the running job, then ends the worker thread.
    public func stop() {
        beginShutdown()
        let wasStopped: Bool = condition.withLock {
            let was = stopped
            stopped = true
            condition.broadcast()
            return was
        }
        if !wasStopped { finished.wait() }
    }

    // MARK: Internals

    fileprivate func cancel(id: UInt64) {
        let job: Job? = condition.withLock {
            guard let index = pending.firstIndex(where: { $0.id == id }) else { return nil }
            return pending.remove(at: index)
        }
        if let job {
            job.fail(.cancelled)
            notifyDepth()
        }
    }

    private func expire(id: UInt64) {
        let job: Job? = condition.withLock {
            guard let index = pending.firstIndex(where: { $0.id == id }) else { return nil }
            return pending.remove(at: index)
        }
        if let job {
            job.fail(.timedOut(waitedMs: job.enqueued.elapsedMs))
            notifyDepth()
        }
    }

    private func notifyDepth() {
        onDepthChange?(waiting)
    }

    private func loop() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopped { condition.wait() }
            if pending.isEmpty && stopped {
                condition.unlock()
                break
            }
            let job = pending.removeFirst()
            runningID = job.id
            condition.unlock()
            notifyDepth()

            // A job whose deadline passed while the timer was late is dropped here too.
            let waited = job.enqueued.elapsedMs / 1000
            if timeout > 0 && waited > timeout && !job.exclusive {
                job.fail(.timedOut(waitedMs: waited * 1000))
            } else {
                autoreleasepool { job.work() }
            }
            condition.withLock { runningID = nil }
        }
        finished.signal()
    }
}

#if !canImport(ObjectiveC)
@inline(__always) func autoreleasepool<T>(_ body: () throws -> T) rethrows -> T { try body() }
#endif
