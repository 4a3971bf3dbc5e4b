// The timing database behind `hotswap serve --db FILE`, read by Scripts/timing-report.
//
// Schema (version 1):
//   warmups(id, started_at, model, page_cache, base_load_ms, preloaded, adapter_load_ms, warmup_ms)
//     one row per server start: base load (cold/warm page cache), preloaded adapters, warm-up pass.
//   requests(id, warmup_id, request_id, started_at, adapters, status, outcome, cache, queue_ms,
//            unload_ms, load_ms, apply_ms, swap_ms, text_encode_ms, denoise_ms, decode_ms,
//            inference_ms, total_ms, steps, width, height, seed, scheduler)
//     one row per image job that ran (outcome ok, or why it failed). Times in milliseconds,
//     started_at in Unix seconds, seed as text (it may not fit a signed 64-bit integer).
import CSQLite
import Foundation

public struct SQLiteError: Error, CustomStringConvertible {
    public var description: String
}

public final class SQLiteTimingRecorder: TimingRecording, @unchecked Sendable {
    public static let schemaVersion = 1
    public let path: String
    private let lock = NSLock()
    private var db: OpaquePointer?
    private var warmupID: Int64?

    public init(path: String) throws {
        self.path = path
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX
        guard sqlite3_open_v2(path, &handle, flags, nil) == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(handle)
            throw SQLiteError(description: message)
        }
        db = handle
        sqlite3_busy_timeout(handle, 5000)
        try execute("""
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            CREATE TABLE IF NOT EXISTS warmups (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                started_at REAL NOT NULL,
                model TEXT NOT NULL,
                page_cache TEXT NOT NULL,
                base_load_ms REAL NOT NULL,
                preloaded TEXT NOT NULL,
                adapter_load_ms REAL NOT NULL,
                warmup_ms REAL NOT NULL
            );
            CREATE TABLE IF NOT EXISTS requests (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                warmup_id INTEGER REFERENCES warmups(id),
                request_id TEXT NOT NULL,
                started_at REAL NOT NULL,
                adapters TEXT NOT NULL,
                status INTEGER NOT NULL,
                outcome TEXT NOT NULL,
                cache TEXT NOT NULL,
                queue_ms REAL NOT NULL,
                unload_ms REAL NOT NULL,
                load_ms REAL NOT NULL,
                apply_ms REAL NOT NULL,
                swap_ms REAL NOT NULL,
                text_encode_ms REAL NOT NULL,
                denoise_ms REAL NOT NULL,
                decode_ms REAL NOT NULL,
                inference_ms REAL NOT NULL,
                total_ms REAL NOT NULL,
                steps INTEGER NOT NULL,
                width INTEGER NOT NULL,
                height INTEGER NOT NULL,
                seed TEXT NOT NULL,
                scheduler TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS requests_started_at ON requests(started_at);
            PRAGMA user_version=\(Self.schemaVersion);
            """)
    }

    deinit { close() }

    public func recordWarmup(_ report: WarmupReport) throws {
        try lock.withLock {
            let id = try insert("""
                INSERT INTO warmups (started_at, model, page_cache, base_load_ms, preloaded, adapter_load_ms, warmup_ms)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, [.real(Date().timeIntervalSince1970), .text(report.modelName), .text(report.pageCache),
                      .real(report.baseLoadMs), .text(report.preloaded.joined(separator: "+")),
                      .real(report.adapterLoadMs), .real(report.warmupMs)])
            warmupID = id
        }
    }

    public func recordRequest(_ t: RequestTiming) throws {
        try lock.withLock {
            _ = try insert("""
                INSERT INTO requests (warmup_id, request_id, started_at, adapters, status, outcome, cache, queue_ms,
                    unload_ms, load_ms, apply_ms, swap_ms, text_encode_ms, denoise_ms, decode_ms, inference_ms, total_ms,
                    steps, width, height, seed, scheduler)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [warmupID.map { .integer($0) } ?? .null, .text(t.requestID), .real(t.startedAt), .text(t.adapters),
                      .integer(Int64(t.status)), .text(t.outcome), .text(t.cache), .real(t.queueMs), .real(t.unloadMs),
                      .real(t.loadMs), .real(t.applyMs), .real(t.swapMs), .real(t.textEncodeMs), .real(t.denoiseMs),
                      .real(t.decodeMs), .real(t.inferenceMs), .real(t.totalMs), .integer(Int64(t.steps)),
                      .integer(Int64(t.width)), .integer(Int64(t.height)), .text(String(t.seed)), .text(t.scheduler)])
        }
    }

    public func latestRequests(limit: Int) throws -> [RequestTiming] {
        try lock.withLock {
            guard let db else { throw SQLiteError(description: "the database is closed") }
            var statement: OpaquePointer?
            let sql = """
                SELECT request_id, started_at, adapters, status, outcome, cache, queue_ms, unload_ms, load_ms, apply_ms,
                    swap_ms, text_encode_ms, denoise_ms, decode_ms, inference_ms, total_ms, steps, width, height, seed, scheduler
                FROM requests ORDER BY id DESC LIMIT ?
                """
            guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else { throw lastError() }
            defer { sqlite3_finalize(statement) }
            sqlite3_bind_int64(statement, 1, Int64(limit))
            var rows: [RequestTiming] = []
            while true {
                let step = sqlite3_step(statement)
                if step == SQLITE_DONE { break }
                guard step == SQLITE_ROW else { throw lastError() }
                func text(_ i: Int32) -> String { sqlite3_column_text(statement, i).map { String(cString: $0) } ?? "" }
                func real(_ i: Int32) -> Double { sqlite3_column_double(statement, i) }
                func int(_ i: Int32) -> Int { Int(sqlite3_column_int64(statement, i)) }
                rows.append(RequestTiming(
                    requestID: text(0), startedAt: real(1), adapters: text(2), status: int(3), outcome: text(4), cache: text(5),
                    queueMs: real(6), unloadMs: real(7), loadMs: real(8), applyMs: real(9), swapMs: real(10),
                    textEncodeMs: real(11), denoiseMs: real(12), decodeMs: real(13), inferenceMs: real(14), totalMs: real(15),
                    steps: int(16), width: int(17), height: int(18), seed: UInt64(text(19)) ?? 0, scheduler: text(20)))
            }
            return rows
        }
    }

    /// Rows in each table.
    public func rowCounts() throws -> (warmups: Int, requests: Int) {
        try lock.withLock {
            guard let db else { throw SQLiteError(description: "the database is closed") }
            func count(_ table: String) throws -> Int {
                var statement: OpaquePointer?
                guard sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM \(table)", -1, &statement, nil) == SQLITE_OK else {
                    throw lastError()
                }
                defer { sqlite3_finalize(statement) }
                guard sqlite3_step(statement) == SQLITE_ROW else { throw lastError() }
                return Int(sqlite3_column_int64(statement, 0))
            }
            return (try count("warmups"), try count("requests"))
        }
    }

    /// Checkpoints the WAL into the main file and closes.
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

    private func insert(_ sql: String, _ values: [Value]) throws -> Int64 {
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
        return sqlite3_last_insert_rowid(db)
    }

    private func lastError() -> SQLiteError {
        SQLiteError(description: db.map { String(cString: sqlite3_errmsg($0)) } ?? "the database is closed")
    }
}
