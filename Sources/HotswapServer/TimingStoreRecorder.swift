// The timing database behind `hotswap serve --db FILE`: HotswapStore's TimingStore (tables
// `warmups` and `requests`, with the server's request id, HTTP status and queue time), plus one
// table of the server's own in the same file, read by Scripts/timing-report:
//   server_warmups(warmup_id PRIMARY KEY -> warmups.id, preloaded, adapter_load_ms)
import CSQLite
import Foundation
import HotswapStore

public struct SQLiteError: Error, CustomStringConvertible {
    public var description: String
}

public final class TimingStoreRecorder: TimingRecording, @unchecked Sendable {
    public let path: String
    public let store: TimingStore
    private let lock = NSLock()
    private var db: OpaquePointer?          // the server's own connection, for its two tables
    private var warmupID: Int64?

    public static let serverSchema = """
        CREATE TABLE IF NOT EXISTS server_warmups (
            warmup_id INTEGER PRIMARY KEY REFERENCES warmups(id),
            preloaded TEXT NOT NULL,
            adapter_load_ms REAL NOT NULL
        );
        """

    public init(path: String) throws {
        self.path = path
        store = try TimingStore(path: path)
        var handle: OpaquePointer?
        guard sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nil) == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(handle)
            throw SQLiteError(description: "\(path): \(message)")
        }
        db = handle
        sqlite3_busy_timeout(handle, 5000)
        try execute(Self.serverSchema)
    }

    deinit { close() }

    public func recordWarmup(_ report: WarmupReport) throws {
        let id = try store.recordWarmup(WarmupRecord(
            model: report.modelName, startedAt: Date(), weightsLoadMs: report.baseLoadMs, firstPassMs: report.warmupMs,
            pageCache: ["cold", "warm"].contains(report.pageCache) ? report.pageCache : nil))
        try lock.withLock {
            warmupID = id
            try run("INSERT OR REPLACE INTO server_warmups (warmup_id, preloaded, adapter_load_ms) VALUES (?, ?, ?)",
                    [.integer(id), .text(report.preloaded.joined(separator: ", ")), .real(report.adapterLoadMs)])
        }
    }

    public func recordRequest(_ t: RequestTiming) throws {
        let ok = t.outcome == "ok"
        try store.recordRequest(RequestRecord(
            createdAt: Date(timeIntervalSince1970: t.startedAt), warmupId: lock.withLock { warmupID }, requestId: t.requestID,
            status: t.status, queueMs: t.queueMs, adapters: t.adapters, cache: t.cache, swapUnloadMs: t.unloadMs,
            swapLoadMs: t.loadMs, swapApplyMs: t.applyMs, swapMs: t.swapMs, textEncodeMs: ok ? t.textEncodeMs : nil,
            denoiseMs: ok ? t.denoiseMs : nil, decodeMs: ok ? t.decodeMs : nil, pngMs: nil, totalMs: t.totalMs,
            steps: t.steps, width: t.width, height: t.height, scheduler: t.scheduler, seed: t.seed, outcome: t.outcome,
            error: t.error))
    }

    public func latestRequests(limit: Int) throws -> [RequestTiming] {
        try store.latestRequests(limit: limit).map { r in
            RequestTiming(
                requestID: r.requestId ?? "", startedAt: r.createdAt.timeIntervalSince1970, adapters: r.adapters,
                status: r.status ?? 0, outcome: r.outcome, cache: r.cache ?? "", queueMs: r.queueMs ?? 0,
                unloadMs: r.swapUnloadMs ?? 0, loadMs: r.swapLoadMs ?? 0, applyMs: r.swapApplyMs ?? 0, swapMs: r.swapMs ?? 0,
                textEncodeMs: r.textEncodeMs ?? 0, denoiseMs: r.denoiseMs ?? 0, decodeMs: r.decodeMs ?? 0,
                inferenceMs: (r.textEncodeMs ?? 0) + (r.denoiseMs ?? 0) + (r.decodeMs ?? 0),
                totalMs: r.totalMs ?? 0, steps: r.steps ?? 0, width: r.width ?? 0, height: r.height ?? 0, seed: r.seed ?? 0,
                scheduler: r.scheduler ?? "", error: r.error)
        }
    }

    /// Rows in the warmups and requests tables.
    public func rowCounts() throws -> (warmups: Int, requests: Int) {
        try lock.withLock {
            func count(_ table: String) throws -> Int {
                guard let db else { throw SQLiteError(description: "the database is closed") }
                var statement: OpaquePointer?
                guard sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM \(table)", -1, &statement, nil) == SQLITE_OK else { throw lastError() }
                defer { sqlite3_finalize(statement) }
                guard sqlite3_step(statement) == SQLITE_ROW else { throw lastError() }
                return Int(sqlite3_column_int64(statement, 0))
            }
            return (try count("warmups"), try count("requests"))
        }
    }

    /// Checkpoints the WAL into the main file and closes the server's connection (TimingStore's
    /// own closes when it is released).
    public func close() {
        lock.withLock {
            guard let db else { return }
            sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil)
            sqlite3_close_v2(db)
            self.db = nil
        }
    }

    // MARK: SQLite helpers (callers hold the lock)

    private enum Value {
        case null, integer(Int64), real(Double), text(String)
    }

    private func execute(_ sql: String) throws {
        guard let db else { throw SQLiteError(description: "the database is closed") }
        var message: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(db, sql, nil, nil, &message) == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(message)
            throw SQLiteError(description: text)
        }
    }

    private func run(_ sql: String, _ values: [Value]) throws {
        guard let db else { throw SQLiteError(description: "the database is closed") }
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else { throw lastError() }
        defer { sqlite3_finalize(statement) }
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        for (i, value) in values.enumerated() {
            let index = Int32(i + 1)
            switch value {
            case .null: sqlite3_bind_null(statement, index)
            case .integer(let v): sqlite3_bind_int64(statement, index, v)
            case .real(let v): sqlite3_bind_double(statement, index, v)
            case .text(let v): sqlite3_bind_text(statement, index, v, -1, transient)
            }
        }
        guard sqlite3_step(statement) == SQLITE_DONE else { throw lastError() }
    }

    private func lastError() -> SQLiteError {
        SQLiteError(description: db.map { String(cString: sqlite3_errmsg($0)) } ?? "the database is closed")
    }
}
