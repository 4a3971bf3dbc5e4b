import CSQLite
import Foundation
import Testing
@testable import HotswapStore

/// TimingStore: schema, round trip, WAL, and a second connection reading while the store writes.
@Suite struct TimingStoreTests {
    func temporaryPath() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hotswap-timings-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent("timings.sqlite").path
    }

    @Test func roundTripsWarmupsAndRequests() throws {
        let store = try TimingStore(path: temporaryPath())
        #expect(try store.journalMode() == "wal")
        let started = Date(timeIntervalSince1970: 1_800_000_000.125)
        let warmup = try store.recordWarmup(WarmupRecord(model: "sd1-tiny", startedAt: started, weightsLoadMs: 12.5,
                                                         firstPassMs: 40, pageCache: "warm"))
        #expect(warmup == 1)
        var request = RequestRecord(createdAt: started, warmupId: warmup, requestId: "r-1", status: 200, queueMs: 1.5,
                                    adapters: "a:0.8, b:1",
                                    swap: SwapReport(cache: .hit, unloadMs: 0.1, loadMs: 0, applyMs: 3.5, totalMs: 3.7),
                                    generation: GenerationTimings(textEncodeMs: 5, denoiseMs: 100, decodeMs: 20),
                                    pngMs: 2, totalMs: 131, steps: 4, width: 64, height: 64,
                                    scheduler: "euler", seed: UInt64.max, outcome: "ok")
        request.id = try store.recordRequest(request)
        let failed = RequestRecord(createdAt: started.addingTimeInterval(1), warmupId: warmup, adapters: "bad:1",
                                   outcome: "adapter_mismatch", error: "does not fit")
        try store.recordRequest(failed)
        let rows = try store.latestRequests(limit: 10)
        #expect(rows.count == 2)
        #expect(rows[0].outcome == "adapter_mismatch" && rows[0].error == "does not fit" && rows[0].swap == nil && rows[0].generation == nil)
        #expect(rows[1] == request)
        let warmups = try store.latestWarmups(limit: 5)
        #expect(warmups.count == 1 && warmups[0].model == "sd1-tiny" && warmups[0].startedAt == started && warmups[0].pageCache == "warm")
    }

    @Test func readersDoNotBlockTheWriter() throws {
        let path = temporaryPath()
        let store = try TimingStore(path: path, busyTimeoutMs: 100)
        try store.recordRequest(RequestRecord(adapters: "first"))

        // A second connection opens a read transaction and keeps it open.
        var reader: OpaquePointer?
        #expect(sqlite3_open_v2(path, &reader, SQLITE_OPEN_READONLY, nil) == SQLITE_OK)
        defer { sqlite3_close(reader) }
        #expect(sqlite3_exec(reader, "BEGIN", nil, nil, nil) == SQLITE_OK)
        func count() -> Int64 {
            var s: OpaquePointer?
            sqlite3_prepare_v2(reader, "SELECT COUNT(*) FROM requests", -1, &s, nil)
            defer { sqlite3_finalize(s) }
            sqlite3_step(s)
            return sqlite3_column_int64(s, 0)
        }
        #expect(count() == 1)

        // The writer goes on, well within the busy timeout, while the read transaction is open.
        let start = Date()
        for i in 0..<50 { try store.recordRequest(RequestRecord(adapters: "row \(i)")) }
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(count() == 1)          // the reader's snapshot
        #expect(sqlite3_exec(reader, "COMMIT", nil, nil, nil) == SQLITE_OK)
        #expect(count() == 51)         // a new read sees every committed row
        #expect(try store.latestRequests(limit: 1).first?.adapters == "row 49")

        // And the other way round: a reader thread polling while this thread writes.
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var readerErrors = 0
        DispatchQueue.global().async {
            var other: OpaquePointer?
            sqlite3_open_v2(path, &other, SQLITE_OPEN_READONLY, nil)
            for _ in 0..<200 {
                var s: OpaquePointer?
                if sqlite3_prepare_v2(other, "SELECT COUNT(*) FROM requests", -1, &s, nil) != SQLITE_OK { readerErrors += 1 }
                if sqlite3_step(s) != SQLITE_ROW { readerErrors += 1 }
                sqlite3_finalize(s)
            }
            sqlite3_close(other)
            done.signal()
        }
        for i in 0..<100 { try store.recordRequest(RequestRecord(adapters: "concurrent \(i)")) }
        done.wait()
        #expect(readerErrors == 0)
        #expect(try store.latestRequests(limit: 1000).count == 151)
    }

    @Test func serverWarmupsAndUnreadableDates() throws {
        let path = temporaryPath()
        let store = try TimingStore(path: path)
        let started = Date(timeIntervalSince1970: 1_800_000_000.5)
        try store.recordWarmup(WarmupRecord(model: "cli", startedAt: started, weightsLoadMs: 1))
        let id = try store.recordWarmup(WarmupRecord(model: "server", startedAt: started, weightsLoadMs: 2, firstPassMs: 3,
                                                     preloaded: ["a", "b"], adapterLoadMs: 4.5))
        // A request without a warm-up id refers to the latest warm-up.
        try store.recordRequest(RequestRecord(adapters: "x"))
        #expect(try store.latestRequests(limit: 1).first?.warmupId == id)
        let warmups = try store.latestWarmups(limit: 5)
        #expect(warmups.map(\.model) == ["server", "cli"])
        #expect(warmups[0].preloaded == ["a", "b"] && warmups[0].adapterLoadMs == 4.5 && warmups[0].id == id)
        #expect(warmups[1].preloaded == nil && warmups[1].adapterLoadMs == nil)
        #expect(try store.rowCounts() == (warmups: 2, requests: 1))

        // A date that another writer garbled is an error naming the column, not a row from 1970.
        var db: OpaquePointer?
        #expect(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK)
        #expect(sqlite3_exec(db, "UPDATE requests SET created_at = 'yesterday'", nil, nil, nil) == SQLITE_OK)
        sqlite3_close(db)
        #expect { try store.latestRequests(limit: 1) } throws: { "\($0)".contains("requests.created_at") }
        store.close()
        #expect(throws: TimingStoreError.self) { try store.recordRequest(RequestRecord(adapters: "after close")) }
    }

    /// A database written before the `api` column existed gets it on open; its old rows read as nil.
    @Test func olderDatabaseGainsTheAPIColumn() throws {
        let path = temporaryPath()
        let oldSchema = TimingStore.schema.replacingOccurrences(of: ",\n    api TEXT", with: "")
        #expect(oldSchema != TimingStore.schema)
        var db: OpaquePointer?
        #expect(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK)
        #expect(sqlite3_exec(db, oldSchema, nil, nil, nil) == SQLITE_OK)
        #expect(sqlite3_exec(db, "INSERT INTO requests (created_at, adapters, outcome) VALUES ('2026-01-01T00:00:00.000Z', 'old:1', 'ok')", nil, nil, nil) == SQLITE_OK)
        sqlite3_close(db)

        let store = try TimingStore(path: path)
        var row = RequestRecord(adapters: "new:1")
        row.api = "a1111"
        try store.recordRequest(row)
        let rows = try store.latestRequests(limit: 5)
        #expect(rows.map(\.api) == ["a1111", nil])
        #expect(rows.map(\.adapters) == ["new:1", "old:1"])
        store.close()
        // Opening it again adds nothing twice.
        let again = try TimingStore(path: path)
        #expect(try again.latestRequests(limit: 5).count == 2)
        again.close()
    }

    @Test func badPathIsAnError() {
        #expect(throws: TimingStoreError.self) { try TimingStore(path: "/nonexistent-dir/x/timings.sqlite") }
    }
}
