import Foundation
import HTTPTypes
import NIOConcurrencyHelpers
import Testing
@testable import HotswapServer

@Suite("Server job queue")
struct JobQueueTests {
    @Test func runsJobsOneAtATimeInArrivalOrderOnOneThread() async throws {
        let queue = JobQueue(depth: 16, timeout: 10)
        defer { queue.stop() }
        let log = NIOLockedValueBox<[Int]>([])
        let threads = NIOLockedValueBox<Set<UInt>>([])
        let running = NIOLockedValueBox(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<8 {
                group.addTask {
                    _ = try await queue.submit { _ in
                        running.withLockedValue { $0 += 1; precondition($0 == 1, "two jobs at once") }
                        threads.withLockedValue { _ = $0.insert(UInt(pthread_self())) }
                        Thread.sleep(forTimeInterval: 0.005)
                        log.withLockedValue { $0.append(i) }
                        running.withLockedValue { $0 -= 1 }
                    }
                }
                try await Task.sleep(for: .milliseconds(2))
            }
            try await group.waitForAll()
        }
        #expect(log.withLockedValue { $0 }.count == 8)
        #expect(threads.withLockedValue { $0 }.count == 1, "every job on the one worker thread")
    }

    @Test func aCancelledWaitingJobFreesItsSlot() async throws {
        let queue = JobQueue(depth: 1, timeout: 10)
        defer { queue.stop() }
        let gate = DispatchSemaphore(value: 0)
        let ran = NIOLockedValueBox<[String]>([])
        async let first: JobResult<Void> = queue.submit { _ in gate.wait(); ran.withLockedValue { $0.append("first") } }
        try await waitFor { queue.busy }
        let ticketBox = NIOLockedValueBox<JobTicket?>(nil)
        let second = Task {
            try await queue.submit(ticketHandler: { t in ticketBox.withLockedValue { $0 = t } }) { _ in
                ran.withLockedValue { $0.append("second") }
            }
        }
        try await waitFor { queue.waiting == 1 }
        // The queue is full now.
        await #expect(throws: JobQueueError.full(depth: 1)) { try await queue.submit { _ in } }
        // The client of the second job goes away: its slot is free at once.
        ticketBox.withLockedValue { $0 }?.cancel()
        await #expect(throws: JobQueueError.cancelled) { try await second.value }
        #expect(queue.waiting == 0)
        async let third: JobResult<Void> = queue.submit { _ in ran.withLockedValue { $0.append("third") } }
        try await waitFor { queue.waiting == 1 }
        gate.signal()
        _ = try await first
        _ = try await third
        #expect(ran.withLockedValue { $0 } == ["first", "third"])
    }

    @Test func taskCancellationDropsAWaitingJob() async throws {
        let queue = JobQueue(depth: 2, timeout: 10)
        defer { queue.stop() }
        let gate = DispatchSemaphore(value: 0)
        async let first: JobResult<Void> = queue.submit { _ in gate.wait() }
        try await waitFor { queue.busy }
        let waiting = Task { try await queue.submit { _ in Issue.record("a cancelled job ran") } }
        try await waitFor { queue.waiting == 1 }
        waiting.cancel()
        await #expect(throws: JobQueueError.cancelled) { try await waiting.value }
        #expect(queue.waiting == 0)
        gate.signal()
        _ = try await first
    }

    @Test func shutdownDropsWaitingJobsAndFinishesTheRunningOne() async throws {
        let queue = JobQueue(depth: 4, timeout: 10)
        let gate = DispatchSemaphore(value: 0)
        let finished = NIOLockedValueBox(false)
        async let running: JobResult<Void> = queue.submit { _ in gate.wait(); finished.withLockedValue { $0 = true } }
        try await waitFor { queue.busy }
        let waiting = Task { try await queue.submit { _ in Issue.record("a dropped job ran") } }
        try await waitFor { queue.waiting == 1 }
        queue.beginShutdown()
        await #expect(throws: JobQueueError.shuttingDown) { try await waiting.value }
        await #expect(throws: JobQueueError.shuttingDown) { try await queue.submit { _ in } }
        gate.signal()
        _ = try await running
        queue.stop()
        #expect(finished.withLockedValue { $0 })
    }

    @Test func queueWaitIsMeasured() async throws {
        let queue = JobQueue(depth: 2, timeout: 10)
        defer { queue.stop() }
        let gate = DispatchSemaphore(value: 0)
        async let first: JobResult<Void> = queue.submit { _ in gate.wait() }
        try await waitFor { queue.busy }
        async let second: JobResult<Int> = queue.submit { _ in 42 }
        try await waitFor { queue.waiting == 1 }
        try await Task.sleep(for: .milliseconds(100))
        gate.signal()
        _ = try await first
        let result = try await second
        #expect(result.value == 42)
        #expect(result.queueMs >= 90)
    }
}
