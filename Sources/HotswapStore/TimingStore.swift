import CSQLite
import Foundation

/// Per-warmup and per-request timings in a SQLite file (libsqlite3).
///
/// WAL journal, so readers (another connection, `sqlite3 FILE`, a dashboard) never block the
/// writer and see the last committed rows; a busy timeout for the rare writer-writer overlap;
/// statements prepared once. One connection per instance, serialized by a lock, so it can be
/// shared between server threads. Times are stored as ISO 8601 UTC text with milliseconds.
public final class TimingStore: @unchecked Sendable {
    public let path: String
    private var db: OpaquePointer?
    private let lock = NSLock()
    private var insertWarmup: OpaquePointer?
    private var insertRequest: OpaquePointer?
    private var selectRequests: OpaquePointer?
    private var selectWarmups: OpaquePointer?

    public static let schema = """
        CREATE TABLE IF NOT EXISTS warmups (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model TEXT NOT NULL,
            started_at TEXT NOT NULL,
            weights_load_ms REAL NOT NULL,
            first_pass_ms REAL,
            page_cache TEXT CHECK (page_cache IN ('cold', 'warm') OR page_cache IS NULL)
        );
        CREATE TABLE IF NOT EXISTS requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            warmup_id INTEGER REFERENCES warmups(id),
            request_id TEXT,
            status INTEGER,
            queue_ms REAL,
            adapters TEXT NOT NULL DEFAULT '',
            cache TEXT CHECK (cache IN ('none', 'reuse', 'hit', 'miss') OR cache IS NULL),
            swap_unload_ms REAL,
            swap_load_ms REAL,
            swap_apply_ms REAL,
            swap_ms REAL,
            text_encode_ms REAL,
            denoise_ms REAL,
            decode_ms REAL,
            png_ms REAL,
            total_ms REAL,
            steps INTEGER,
            width INTEGER,
            height INTEGER,
            scheduler TEXT,
            seed INTEGER,
            outcome TEXT NOT NULL,
            error TEXT
        );
        CREATE INDEX IF NOT EXISTS requests_created_at ON requests(created_at);
        """

    static let requestColumns = """
        created_at, warmup_id, request_id, status, queue_ms, adapters, cache, swap_unload_ms, swap_load_ms, swap_apply_ms, swap_ms, text_encode_ms, \
        denoise_ms, decode_ms, png_ms, total_ms, steps, width, height, scheduler, seed, outcome, error
        """

    /// Opens (creating if needed) the database at `path` and its tables.
    public init(path: String, busyTimeoutMs: Int32 = 5000) throws {
        self.path = path
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nil)
        db = handle
        guard rc == SQLITE_OK else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(handle)
            db = nil
            throw TimingStoreError(path: path, operation: "open", code: rc, message: message)
        }
        sqlite3_busy_timeout(db, busyTimeoutMs)
        try execute("PRAGMA journal_mode = WAL", operation: "enable WAL")
        try execute("PRAGMA synchronous = NORMAL", operation: "set synchronous")
        try execute("PRAGMA foreign_keys = ON", operation: "enable foreign keys")
        try execute(TimingStore.schema, operation: "create tables (an existing file must have this store's schema)")
        insertWarmup = try prepare("""
            INSERT INTO warmups (model, started_at, weights_load_ms, first_pass_ms, page_cache) VALUES (?, ?, ?, ?, ?)
            """)
        insertRequest = try prepare("INSERT INTO requests (\(TimingStore.requestColumns)) VALUES (\(Array(repeating: "?", count: 23).joined(separator: ", ")))")
        selectRequests = try prepare("SELECT id, \(TimingStore.requestColumns) FROM requests ORDER BY id DESC LIMIT ?")
        selectWarmups = try prepare("SELECT id, model, started_at, weights_load_ms, first_pass_ms, page_cache FROM warmups ORDER BY id DESC LIMIT ?")
    }

    deinit {
        for statement in [insertWarmup, insertRequest, selectRequests, selectWarmups] { sqlite3_finalize(statement) }
        sqlite3_close_v2(db)
    }

    /// The journal mode in effect ("wal").
    public func journalMode() throws -> String {
        lock.lock(); defer { lock.unlock() }
        let statement = try prepare("PRAGMA journal_mode")
        defer { sqlite3_finalize(statement) }
        guard sqlite3_step(statement) == SQLITE_ROW else { throw failure("read journal_mode") }
        return String(cString: sqlite3_column_text(statement, 0))
    }

    // MARK: Writing

    @discardableResult
    public func recordWarmup(_ record: WarmupRecord) throws -> Int64 {
        lock.lock(); defer { lock.unlock() }
        let s = insertWarmup
        sqlite3_reset(s)
        sqlite3_clear_bindings(s)
        bind(s, 1, record.model)
        bind(s, 2, TimingStore.format(record.startedAt))
        bind(s, 3, record.weightsLoadMs)
        bind(s, 4, record.firstPassMs)
        bind(s, 5, record.pageCache)
        try stepDone(s, "insert warmup")
        return sqlite3_last_insert_rowid(db)
    }

    @discardableResult
    public func recordRequest(_ r: RequestRecord) throws -> Int64 {
        lock.lock(); defer { lock.unlock() }
        let s = insertRequest
        sqlite3_reset(s)
        sqlite3_clear_bindings(s)
        bind(s, 1, TimingStore.format(r.createdAt))
        bind(s, 2, r.warmupId)
        bind(s, 3, r.requestId)
        bind(s, 4, r.status.map(Int64.init))
        bind(s, 5, r.queueMs)
        let values: [Any?] = [r.adapters, r.cache, r.swapUnloadMs, r.swapLoadMs, r.swapApplyMs, r.swapMs, r.textEncodeMs,
                              r.denoiseMs, r.decodeMs, r.pngMs, r.totalMs, r.steps.map { Int64($0) }, r.width.map { Int64($0) },
                              r.height.map { Int64($0) }, r.scheduler, r.seed.map { Int64(bitPattern: $0) }, r.outcome, r.error]
        for (offset, value) in values.enumerated() {
            let index = Int32(6 + offset)
            switch value {
            case let v as String: bind(s, index, v)
            case let v as Double: bind(s, index, v)
            case let v as Int64: bind(s, index, v)
            default: sqlite3_bind_null(s, index)
            }
        }
        try stepDone(s, "insert request")
        return sqlite3_last_insert_rowid(db)
    }

    // MARK: Reading

    /// The newest requests first.
    public func latestRequests(limit: Int) throws -> [RequestRecord] {
        lock.lock(); defer { lock.unlock() }
        let s = selectRequests
        sqlite3_reset(s)
        sqlite3_bind_int64(s, 1, Int64(limit))
        var rows: [RequestRecord] = []
        while true {
            let rc = sqlite3_step(s)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw failure("read requests") }
            var r = RequestRecord(createdAt: TimingStore.parse(text(s, 1) ?? "") ?? Date(timeIntervalSince1970: 0))
            r.id = sqlite3_column_int64(s, 0)
            r.warmupId = int(s, 2)
            r.requestId = text(s, 3)
            r.status = int(s, 4).map(Int.init)
            r.queueMs = double(s, 5)
            r.adapters = text(s, 6) ?? ""
            r.cache = text(s, 7)
            r.swapUnloadMs = double(s, 8)
            r.swapLoadMs = double(s, 9)
            r.swapApplyMs = double(s, 10)
            r.swapMs = double(s, 11)
            r.textEncodeMs = double(s, 12)
            r.denoiseMs = double(s, 13)
            r.decodeMs = double(s, 14)
            r.pngMs = double(s, 15)
            r.totalMs = double(s, 16)
            r.steps = int(s, 17).map(Int.init)
            r.width = int(s, 18).map(Int.init)
            r.height = int(s, 19).map(Int.init)
            r.scheduler = text(s, 20)
            r.seed = int(s, 21).map { UInt64(bitPattern: $0) }
            r.outcome = text(s, 22) ?? ""
            r.error = text(s, 23)
            rows.append(r)
        }
        sqlite3_reset(s)
        return rows
    }

    /// The newest warmups first.
    public func latestWarmups(limit: Int) throws -> [WarmupRecord] {
        lock.lock(); defer { lock.unlock() }
        let s = selectWarmups
        sqlite3_reset(s)
        sqlite3_bind_int64(s, 1, Int64(limit))
        var rows: [WarmupRecord] = []
        while true {
            let rc = sqlite3_step(s)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw failure("read warmups") }
            rows.append(WarmupRecord(id: sqlite3_column_int64(s, 0), model: text(s, 1) ?? "",
                                     startedAt: TimingStore.parse(text(s, 2) ?? "") ?? Date(timeIntervalSince1970: 0),
                                     weightsLoadMs: double(s, 3) ?? 0, firstPassMs: double(s, 4), pageCache: text(s, 5)))
        }
        sqlite3_reset(s)
        return rows
    }

    // MARK: Helpers

    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    static func parse(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private func bind(_ s: OpaquePointer?, _ i: Int32, _ value: String?) {
        if let value { sqlite3_bind_text(s, i, value, -1, TimingStore.transient) } else { sqlite3_bind_null(s, i) }
    }
    private func bind(_ s: OpaquePointer?, _ i: Int32, _ value: Double?) {
        if let value { sqlite3_bind_double(s, i, value) } else { sqlite3_bind_null(s, i) }
    }
    private func bind(_ s: OpaquePointer?, _ i: Int32, _ value: Int64?) {
        if let value { sqlite3_bind_int64(s, i, value) } else { sqlite3_bind_null(s, i) }
    }
    private func text(_ s: OpaquePointer?, _ i: Int32) -> String? {
        guard sqlite3_column_type(s, i) != SQLITE_NULL, let p = sqlite3_column_text(s, i) else { return nil }
        return String(cString: p)
    }
    private func double(_ s: OpaquePointer?, _ i: Int32) -> Double? {
        sqlite3_column_type(s, i) == SQLITE_NULL ? nil : sqlite3_column_double(s, i)
    }
    private func int(_ s: OpaquePointer?, _ i: Int32) -> Int64? {
        sqlite3_column_type(s, i) == SQLITE_NULL ? nil : sqlite3_column_int64(s, i)
    }

    private func failure(_ operation: String) -> TimingStoreError {
        TimingStoreError(path: path, operation: operation, code: sqlite3_errcode(db), message: String(cString: sqlite3_errmsg(db)))
    }

    private func execute(_ sql: String, operation: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        guard rc == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? "error \(rc)"
            sqlite3_free(message)
            throw TimingStoreError(path: path, operation: operation, code: rc, message: text)
        }
    }

    private func prepare(_ sql: String) throws -> OpaquePointer? {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) == SQLITE_OK else {
            throw failure("prepare \(sql.prefix(40))")
        }
        return statement
    }

    private func stepDone(_ s: OpaquePointer?, _ operation: String) throws {
        let rc = sqlite3_step(s)
        defer { sqlite3_reset(s) }
        guard rc == SQLITE_DONE else { throw failure(operation) }
    }
}
