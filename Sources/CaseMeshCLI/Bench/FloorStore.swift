import CaseMeshCRDT
import GRDBSQLite

/// The merge benchmark's reference: the least any durable field-level store must do
/// per op, on raw sqlite3 prepared statements with the same durability settings as
/// the CaseMesh store (WAL, synchronous FULL, 64 MiB cache) and the same transaction batches:
/// append the op to a log table and upsert its field's state row, keeping the later
/// timestamp.
///
/// Raw sqlite3 on purpose: this is the floor CaseMesh is measured against, so it must
/// not carry any library's overhead.
final class FloorStore {
    private var db: OpaquePointer?
    private var insertLog: OpaquePointer?
    private var upsertState: OpaquePointer?

    init(path: String) throws {
        guard sqlite3_open(path, &db) == SQLITE_OK else { throw CLIError(message: "floor: cannot open \(path)") }
        try execute("PRAGMA journal_mode = WAL")
        try execute("PRAGMA synchronous = FULL")
        try execute("PRAGMA cache_size = -65536")
        try execute(
            "CREATE TABLE opLog (id INTEGER PRIMARY KEY, caseId INTEGER, field INTEGER, hlc INTEGER, replica INTEGER, value TEXT)"
        )
        try execute(
            """
            CREATE TABLE fieldState (caseId INTEGER, field INTEGER, hlc INTEGER, replica INTEGER, value TEXT,
            PRIMARY KEY (caseId, field)) WITHOUT ROWID
            """)
        insertLog = try prepare("INSERT INTO opLog (caseId, field, hlc, replica, value) VALUES (?, ?, ?, ?, ?)")
        upsertState = try prepare(
            """
            INSERT INTO fieldState (caseId, field, hlc, replica, value) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (caseId, field) DO UPDATE SET hlc = excluded.hlc, replica = excluded.replica, value = excluded.value
            WHERE (excluded.hlc, excluded.replica) > (fieldState.hlc, fieldState.replica)
            """)
    }

    deinit {
        sqlite3_finalize(insertLog)
        sqlite3_finalize(upsertState)
        sqlite3_close(db)
    }

    private func execute(_ sql: String) throws {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
            throw CLIError(message: "floor: \(String(cString: sqlite3_errmsg(db)))")
        }
    }

    private func prepare(_ sql: String) throws -> OpaquePointer? {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil) == SQLITE_OK else {
            throw CLIError(message: "floor: \(String(cString: sqlite3_errmsg(db)))")
        }
        return statement
    }

    private func step(
        _ statement: OpaquePointer?, _ caseId: Int, _ field: Int, _ hlc: Int64, _ replica: Int, _ value: String
    ) throws {
        sqlite3_bind_int64(statement, 1, Int64(caseId))
        sqlite3_bind_int64(statement, 2, Int64(field))
        sqlite3_bind_int64(statement, 3, hlc)
        sqlite3_bind_int64(statement, 4, Int64(replica))
        var value = value
        let result = value.withUTF8 { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                sqlite3_bind_text(
                    statement, 5, chars.baseAddress, Int32(chars.count),
                    unsafeBitCast(-1, to: sqlite3_destructor_type.self))
            }
        }
        guard result == SQLITE_OK, sqlite3_step(statement) == SQLITE_DONE else {
            throw CLIError(message: "floor: \(String(cString: sqlite3_errmsg(db)))")
        }
        sqlite3_reset(statement)
    }

    func seed(cases: Int, fields: Int, hlc: UInt64) throws {
        try execute("BEGIN")
        for caseId in 0..<cases {
            for field in 0..<fields { try step(upsertState, caseId, field, Int64(hlc) << 16, -1, "init") }
        }
        try execute("COMMIT")
    }

    func apply(_ updates: [MergeWorkload.Update], replica: Int, batch: Int) throws {
        var start = 0
        while start < updates.count {
            try execute("BEGIN")
            for update in updates[start..<min(start + batch, updates.count)] {
                let hlc = Int64(update.change.hlc.physical) << 16 | Int64(update.change.hlc.logical)
                guard case .assign(_, let value) = update.change.ops[0] else { continue }
                try step(insertLog, update.caseIndex, update.fieldIndex, hlc, replica, value.description)
                try step(upsertState, update.caseIndex, update.fieldIndex, hlc, replica, value.description)
            }
            try execute("COMMIT")
            start += batch
        }
    }
}
