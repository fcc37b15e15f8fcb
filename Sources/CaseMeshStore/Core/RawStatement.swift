import GRDB
import GRDBSQLite

/// A prepared statement driven through the sqlite3 C API, for the few statements
/// on the apply hot path.
///
/// GRDB's `Statement.execute(arguments:)` builds an argument array of enum values
/// per call; at hundreds of thousands of changes per second that overhead was a
/// measured third of the apply time, so these statements bind integers and blobs
/// directly. Everything else goes through GRDB.
///
/// - Important: Lives within one transaction on the connection it was prepared on;
///   ``finalize()`` before the connection is used for anything else.
final class RawStatement {
    private let connection: OpaquePointer
    private var statement: OpaquePointer?
    private var bindIndex: Int32 = 0

    init(_ db: Database, _ sql: String) throws {
        guard let connection = db.sqliteConnection else {
            throw StoreError(code: .database, message: "database is closed")
        }
        self.connection = connection
        let code = sqlite3_prepare_v3(connection, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard code == SQLITE_OK else { throw failure(code) }
    }

    deinit { sqlite3_finalize(statement) }

    func finalize() {
        sqlite3_finalize(statement)
        statement = nil
    }

    private func failure(_ code: Int32) -> StoreError {
        StoreError(code: .database, message: "database error: \(String(cString: sqlite3_errmsg(connection))) (\(code))")
    }

    @discardableResult
    func bind(_ value: Int64) -> RawStatement {
        bindIndex += 1
        sqlite3_bind_int64(statement, bindIndex, value)
        return self
    }

    @discardableResult
    func bind(_ bytes: [UInt8]) -> RawStatement { bind(bytes[...]) }

    @discardableResult
    func bind(_ bytes: ArraySlice<UInt8>) -> RawStatement {
        bindIndex += 1
        bytes.withUnsafeBytes { buffer in
            // SQLITE_TRANSIENT: SQLite copies the bytes before this returns.
            _ = sqlite3_bind_blob(
                statement, bindIndex, buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(buffer.count),
                unsafeBitCast(-1, to: sqlite3_destructor_type.self))
        }
        return self
    }

    @discardableResult
    func bind(_ text: String) -> RawStatement {
        bindIndex += 1
        var text = text
        text.withUTF8 { buffer in
            _ = buffer.withMemoryRebound(to: CChar.self) { chars in
                sqlite3_bind_text(
                    statement, bindIndex, chars.baseAddress, Int32(chars.count),
                    unsafeBitCast(-1, to: sqlite3_destructor_type.self))
            }
        }
        return self
    }

    /// Runs a statement that returns no rows.
    func run() throws {
        defer { reset() }
        let code = sqlite3_step(statement)
        guard code == SQLITE_DONE else { throw failure(code) }
    }

    /// Runs a query and returns the first row's blob in column 0, if any row.
    func firstBlob() throws -> [UInt8]? {
        defer { reset() }
        let code = sqlite3_step(statement)
        if code == SQLITE_DONE { return nil }
        guard code == SQLITE_ROW else { throw failure(code) }
        let count = Int(sqlite3_column_bytes(statement, 0))
        guard count > 0, let pointer = sqlite3_column_blob(statement, 0) else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: pointer, count: count))
    }

    private func reset() {
        sqlite3_reset(statement)
        sqlite3_clear_bindings(statement)
        bindIndex = 0
    }
}
