// A small typed layer over libsqlite3: values that are one of SQLite's storage classes (never an
// `Any` that silently becomes NULL), statements bound by column name, rows read by column name.
import CSQLite
import Foundation

/// One SQLite value.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)

    public init(_ value: String?) { self = value.map { .text($0) } ?? .null }
    public init(_ value: Double?) { self = value.map { .real($0) } ?? .null }
    public init(_ value: Int?) { self = value.map { .integer(Int64($0)) } ?? .null }
    public init(_ value: Int64?) { self = value.map { .integer($0) } ?? .null }
    /// Seeds are UInt64; SQLite integers are signed 64-bit: stored as the same bit pattern.
    public init(_ value: UInt64?) { self = value.map { .integer(Int64(bitPattern: $0)) } ?? .null }

    public var string: String? { if case let .text(v) = self { return v }; return nil }
    public var double: Double? {
        switch self {
        case let .real(v): return v
        case let .integer(v): return Double(v)
        default: return nil
        }
    }
    public var int64: Int64? { if case let .integer(v) = self { return v }; return nil }
    public var int: Int? { int64.map { Int($0) } }
    public var uint64: UInt64? { int64.map { UInt64(bitPattern: $0) } }
}

/// One column of a table as a record type maps it: its SQL definition, how a record writes it and
/// how a record is filled from it. A table is a list of these, so a new field is one line here.
struct Column<Record>: @unchecked Sendable {
    let name: String
    let definition: String
    let write: (Record) -> SQLValue
    let read: (inout Record, SQLValue) throws -> Void

    init(_ name: String, _ definition: String, write: @escaping (Record) -> SQLValue,
         read: @escaping (inout Record, SQLValue) throws -> Void) {
        self.name = name
        self.definition = definition
        self.write = write
        self.read = read
    }
}

/// One connection, serialized by its owner (TimingStore holds the only one per file).
final class SQLiteConnection {
    let path: String
    private var db: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]

    init(path: String, busyTimeoutMs: Int32) throws {
        self.path = path
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(handle)
            throw TimingStoreError(path: path, operation: "open", code: rc, message: message)
        }
        db = handle
        sqlite3_busy_timeout(handle, busyTimeoutMs)
    }

    deinit { close() }

    var isOpen: Bool { db != nil }

    /// Runs SQL text without results (schema, pragmas, transactions).
    func execute(_ sql: String, operation: String) throws {
        let db = try open(operation)
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        guard rc == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? "error \(rc)"
            sqlite3_free(message)
            throw TimingStoreError(path: path, operation: operation, code: rc, message: text)
        }
    }

    /// INSERT of one row given as (column, value) pairs; returns the new rowid.
    @discardableResult
    func insert(into table: String, _ values: [(column: String, value: SQLValue)]) throws -> Int64 {
        let sql = "INSERT INTO \(table) (\(values.map(\.column).joined(separator: ", "))) VALUES (\(values.map { _ in "?" }.joined(separator: ", ")))"
        let statement = try prepared(sql, operation: "insert into \(table)")
        defer { sqlite3_reset(statement); sqlite3_clear_bindings(statement) }
        for (offset, pair) in values.enumerated() { bind(statement, Int32(offset + 1), pair.value) }
        let rc = sqlite3_step(statement)
        guard rc == SQLITE_DONE else { throw failure("insert into \(table)") }
        return sqlite3_last_insert_rowid(db)
    }

    /// Rows of a query, each as column name -> value.
    func query(_ sql: String, _ parameters: [SQLValue] = [], operation: String) throws -> [[String: SQLValue]] {
        let statement = try prepared(sql, operation: operation)
        defer { sqlite3_reset(statement); sqlite3_clear_bindings(statement) }
        for (offset, value) in parameters.enumerated() { bind(statement, Int32(offset + 1), value) }
        var rows: [[String: SQLValue]] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw failure(operation) }
            var row: [String: SQLValue] = [:]
            for i in 0..<sqlite3_column_count(statement) {
                row[String(cString: sqlite3_column_name(statement, i))] = column(statement, i)
            }
            rows.append(row)
        }
        return rows
    }

    /// Checkpoints the WAL into the main file and closes; later calls do nothing.
    func close() {
        guard let db else { return }
        for statement in statements.values { sqlite3_finalize(statement) }
        statements = [:]
        sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil)
        sqlite3_close_v2(db)
        self.db = nil
    }

    // MARK: Helpers

    private func open(_ operation: String) throws -> OpaquePointer {
        guard let db else { throw TimingStoreError(path: path, operation: operation, code: SQLITE_MISUSE, message: "the database is closed") }
        return db
    }

    private func prepared(_ sql: String, operation: String) throws -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        let db = try open(operation)
        var statement: OpaquePointer?
        guard sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) == SQLITE_OK, let statement else {
            throw failure("prepare for \(operation)")
        }
        statements[sql] = statement
        return statement
    }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    private func bind(_ statement: OpaquePointer, _ index: Int32, _ value: SQLValue) {
        switch value {
        case .null: sqlite3_bind_null(statement, index)
        case let .integer(v): sqlite3_bind_int64(statement, index, v)
        case let .real(v): sqlite3_bind_double(statement, index, v)
        case let .text(v): sqlite3_bind_text(statement, index, v, -1, Self.transient)
        }
    }

    private func column(_ statement: OpaquePointer, _ index: Int32) -> SQLValue {
        switch sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER: return .integer(sqlite3_column_int64(statement, index))
        case SQLITE_FLOAT: return .real(sqlite3_column_double(statement, index))
        case SQLITE_TEXT: return .text(String(cString: sqlite3_column_text(statement, index)))
        default: return .null
        }
    }

    private func failure(_ operation: String) -> TimingStoreError {
        TimingStoreError(path: path, operation: operation, code: db.map { sqlite3_errcode($0) } ?? SQLITE_MISUSE,
                         message: db.map { String(cString: sqlite3_errmsg($0)) } ?? "the database is closed")
    }
}
