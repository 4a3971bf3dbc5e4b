import Foundation

/// The timing database (libsqlite3), and its only owner: every table of the file, for the CLI
/// (`render --timings-db`) and the server (`serve --db`), read by Scripts/timing-report.
///
/// WAL journal, so readers (another connection, `sqlite3 FILE`, a dashboard) never block the
/// writer and see the last committed rows; a busy timeout for the rare writer-writer overlap;
/// statements prepared once. One connection per instance, serialized by a lock, so it can be
/// shared between server threads. Times are stored as ISO 8601 UTC text with milliseconds.
public final class TimingStore: @unchecked Sendable {
    public let path: String
    private let connection: SQLiteConnection
    private let lock = NSLock()
    /// The warm-up row new requests refer to (the latest this store wrote).
    private var currentWarmupId: Int64?

    // MARK: Tables: each a list of columns, written and read by name

    static let warmupColumns: [Column<WarmupRecord>] = [
        Column("model", "TEXT NOT NULL", write: { SQLValue($0.model) }, read: { $0.model = $1.string ?? "" }),
        Column("started_at", "TEXT NOT NULL", write: { SQLValue(format($0.startedAt)) },
               read: { $0.startedAt = try parseDate($1, column: "warmups.started_at") }),
        Column("weights_load_ms", "REAL NOT NULL", write: { SQLValue($0.weightsLoadMs) }, read: { $0.weightsLoadMs = $1.double ?? 0 }),
        Column("first_pass_ms", "REAL", write: { SQLValue($0.firstPassMs) }, read: { $0.firstPassMs = $1.double }),
        Column("page_cache", "TEXT CHECK (page_cache IN ('cold', 'warm') OR page_cache IS NULL)",
               write: { SQLValue($0.pageCache) }, read: { $0.pageCache = $1.string }),
    ]

    /// The server's start-up extras, one row per server warm-up (Scripts/timing-report joins it).
    static let serverWarmupColumns: [Column<WarmupRecord>] = [
        Column("warmup_id", "INTEGER PRIMARY KEY REFERENCES warmups(id)", write: { SQLValue($0.id) }, read: { $0.id = $1.int64 }),
        Column("preloaded", "TEXT NOT NULL", write: { SQLValue(($0.preloaded ?? []).joined(separator: ", ")) },
               read: { $0.preloaded = $1.string.map { $0.isEmpty ? [] : $0.components(separatedBy: ", ") } }),
        Column("adapter_load_ms", "REAL NOT NULL", write: { SQLValue($0.adapterLoadMs ?? 0) }, read: { $0.adapterLoadMs = $1.double }),
    ]

    static let requestColumns: [Column<RequestRecord>] = [
        Column("created_at", "TEXT NOT NULL", write: { SQLValue(format($0.createdAt)) },
               read: { $0.createdAt = try parseDate($1, column: "requests.created_at") }),
        Column("warmup_id", "INTEGER REFERENCES warmups(id)", write: { SQLValue($0.warmupId) }, read: { $0.warmupId = $1.int64 }),
        Column("request_id", "TEXT", write: { SQLValue($0.requestId) }, read: { $0.requestId = $1.string }),
        Column("status", "INTEGER", write: { SQLValue($0.status) }, read: { $0.status = $1.int }),
        Column("queue_ms", "REAL", write: { SQLValue($0.queueMs) }, read: { $0.queueMs = $1.double }),
        Column("adapters", "TEXT NOT NULL DEFAULT ''", write: { SQLValue($0.adapters) }, read: { $0.adapters = $1.string ?? "" }),
        // The swap: present as a whole (cache set) or not at all.
        Column("cache", "TEXT CHECK (cache IN ('none', 'reuse', 'hit', 'miss') OR cache IS NULL)",
               write: { SQLValue($0.swap?.cache.rawValue) },
               read: { record, value in record.swap = value.string.flatMap(CacheOutcome.init(rawValue:)).map { SwapReport(cache: $0) } }),
        Column("swap_unload_ms", "REAL", write: { SQLValue($0.swap?.unloadMs) }, read: { $0.swap?.unloadMs = $1.double ?? 0 }),
        Column("swap_load_ms", "REAL", write: { SQLValue($0.swap?.loadMs) }, read: { $0.swap?.loadMs = $1.double ?? 0 }),
        Column("swap_apply_ms", "REAL", write: { SQLValue($0.swap?.applyMs) }, read: { $0.swap?.applyMs = $1.double ?? 0 }),
        Column("swap_ms", "REAL", write: { SQLValue($0.swap?.totalMs) }, read: { $0.swap?.totalMs = $1.double ?? 0 }),
        // Generation: present as a whole (text_encode_ms set) or not at all.
        Column("text_encode_ms", "REAL", write: { SQLValue($0.generation?.textEncodeMs) },
               read: { record, value in record.generation = value.double.map { GenerationTimings(textEncodeMs: $0) } }),
        Column("denoise_ms", "REAL", write: { SQLValue($0.generation?.denoiseMs) }, read: { $0.generation?.denoiseMs = $1.double ?? 0 }),
        Column("decode_ms", "REAL", write: { SQLValue($0.generation?.decodeMs) }, read: { $0.generation?.decodeMs = $1.double ?? 0 }),
        Column("png_ms", "REAL", write: { SQLValue($0.pngMs) }, read: { $0.pngMs = $1.double }),
        Column("total_ms", "REAL", write: { SQLValue($0.totalMs) }, read: { $0.totalMs = $1.double }),
        Column("steps", "INTEGER", write: { SQLValue($0.steps) }, read: { $0.steps = $1.int }),
        Column("width", "INTEGER", write: { SQLValue($0.width) }, read: { $0.width = $1.int }),
        Column("height", "INTEGER", write: { SQLValue($0.height) }, read: { $0.height = $1.int }),
        Column("scheduler", "TEXT", write: { SQLValue($0.scheduler) }, read: { $0.scheduler = $1.string }),
        Column("seed", "INTEGER", write: { SQLValue($0.seed) }, read: { $0.seed = $1.uint64 }),
        Column("outcome", "TEXT NOT NULL", write: { SQLValue($0.outcome) }, read: { $0.outcome = $1.string ?? "" }),
        Column("error", "TEXT", write: { SQLValue($0.error) }, read: { $0.error = $1.string }),
        Column("api", "TEXT", write: { SQLValue($0.api) }, read: { $0.api = $1.string }),
        Column("family", "TEXT", write: { SQLValue($0.family) }, read: { $0.family = $1.string }),
    ]

    /// Request columns added after the table was first shipped: a database written by an older
    /// build gets them with ALTER TABLE (their definitions must allow NULL for the old rows).
    static let addedRequestColumns = ["api", "family"]

    static func createTable<R>(_ name: String, _ columns: [Column<R>], autoincrementID: Bool) -> String {
        let id = autoincrementID ? ["id INTEGER PRIMARY KEY AUTOINCREMENT"] : []
        return "CREATE TABLE IF NOT EXISTS \(name) (\n    " + (id + columns.map { "\($0.name) \($0.definition)" })
            .joined(separator: ",\n    ") + "\n);"
    }

    public static let schema = [
        createTable("warmups", warmupColumns, autoincrementID: true),
        createTable("requests", requestColumns, autoincrementID: true),
        "CREATE INDEX IF NOT EXISTS requests_created_at ON requests(created_at);",
        createTable("server_warmups", serverWarmupColumns, autoincrementID: false),
    ].joined(separator: "\n")

    /// Opens (creating if needed) the database at `path` and its tables.
    public init(path: String, busyTimeoutMs: Int32 = 5000) throws {
        self.path = path
        connection = try SQLiteConnection(path: path, busyTimeoutMs: busyTimeoutMs)
        try connection.execute("PRAGMA journal_mode = WAL", operation: "enable WAL")
        try connection.execute("PRAGMA synchronous = NORMAL", operation: "set synchronous")
        try connection.execute("PRAGMA foreign_keys = ON", operation: "enable foreign keys")
        try connection.execute(Self.schema, operation: "create tables (an existing file must have this store's schema)")
        try addMissingColumns()
    }

    private func addMissingColumns() throws {
        let existing = try connection.query("PRAGMA table_info(requests)", operation: "read the requests table's columns")
            .compactMap { $0["name"]?.string }
        for column in Self.requestColumns where Self.addedRequestColumns.contains(column.name) && !existing.contains(column.name) {
            try connection.execute("ALTER TABLE requests ADD COLUMN \(column.name) \(column.definition)",
                                   operation: "add column requests.\(column.name)")
        }
    }

    /// The journal mode in effect ("wal").
    public func journalMode() throws -> String {
        try lock.withLock {
            try connection.query("PRAGMA journal_mode", operation: "read journal_mode").first?.values.first?.string ?? ""
        }
    }

    // MARK: Writing

    /// Writes a warm-up row (and the server's extras when `preloaded` is set); later requests
    /// without a warmupId of their own refer to it.
    @discardableResult
    public func recordWarmup(_ record: WarmupRecord) throws -> Int64 {
        try lock.withLock {
            try connection.execute("BEGIN", operation: "begin")
            do {
                let id = try connection.insert(into: "warmups", Self.warmupColumns.map { ($0.name, $0.write(record)) })
                if record.preloaded != nil {
                    var extras = record
                    extras.id = id
                    try connection.insert(into: "server_warmups", Self.serverWarmupColumns.map { ($0.name, $0.write(extras)) })
                }
                try connection.execute("COMMIT", operation: "commit")
                currentWarmupId = id
                return id
            } catch {
                try? connection.execute("ROLLBACK", operation: "rollback")
                throw error
            }
        }
    }

    @discardableResult
    public func recordRequest(_ record: RequestRecord) throws -> Int64 {
        try lock.withLock {
            var record = record
            if record.warmupId == nil { record.warmupId = currentWarmupId }
            return try connection.insert(into: "requests", Self.requestColumns.map { ($0.name, $0.write(record)) })
        }
    }

    // MARK: Reading

    /// The newest requests first.
    public func latestRequests(limit: Int) throws -> [RequestRecord] {
        try lock.withLock {
            try connection.query("SELECT * FROM requests ORDER BY id DESC LIMIT ?", [SQLValue(limit)], operation: "read requests")
                .map { row in
                    var record = RequestRecord(id: row["id"]?.int64)
                    for column in Self.requestColumns { try column.read(&record, row[column.name] ?? .null) }
                    return record
                }
        }
    }

    /// The newest warm-ups first, with the server's extras where it wrote them.
    public func latestWarmups(limit: Int) throws -> [WarmupRecord] {
        try lock.withLock {
            try connection.query("""
                SELECT w.*, s.warmup_id, s.preloaded, s.adapter_load_ms
                FROM warmups w LEFT JOIN server_warmups s ON s.warmup_id = w.id ORDER BY w.id DESC LIMIT ?
                """, [SQLValue(limit)], operation: "read warmups")
            .map { row in
                var record = WarmupRecord(model: "", startedAt: Date(), weightsLoadMs: 0)
                for column in Self.warmupColumns + Self.serverWarmupColumns { try column.read(&record, row[column.name] ?? .null) }
                record.id = row["id"]?.int64
                return record
            }
        }
    }

    /// Rows in the warmups and requests tables.
    public func rowCounts() throws -> (warmups: Int, requests: Int) {
        try lock.withLock {
            func count(_ table: String) throws -> Int {
                try connection.query("SELECT COUNT(*) AS n FROM \(table)", operation: "count \(table)").first?["n"]?.int ?? 0
            }
            return (try count("warmups"), try count("requests"))
        }
    }

    /// Checkpoints the WAL into the main file and closes; later writes fail with an error.
    public func close() {
        lock.withLock { connection.close() }
    }

    // MARK: Dates

    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// A stored date; an unreadable one is an error, never a silent 1970.
    static func parseDate(_ value: SQLValue, column: String) throws -> Date {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let text = value.string, let date = formatter.date(from: text) else {
            throw TimingStoreError(path: "", operation: "read \(column)", code: 0,
                                   message: "not an ISO 8601 date: \(value)")
        }
        return date
    }
}
