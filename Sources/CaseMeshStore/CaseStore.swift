public import CaseMeshCRDT
public import CaseMeshModel
import Foundation
import GRDB

/// The durable replica of the cases this node holds: a façade over one SQLite
/// database (GRDB, WAL mode) whose write methods each run in one transaction and
/// keep the store's invariants.
///
/// - Important: Every method that accepts input from outside (a peer's changes, a
///   bundle, a user's write) validates it and throws ``StoreError``; a refused input
///   never leaves partial state behind.
public struct CaseStore: Sendable {
    /// The replica this store belongs to.
    public let replicaID: ReplicaID
    /// The case schema writes and received changes are checked against.
    public let schema: CaseSchema
    let writer: any DatabaseWriter
    let clock: any WallClock
    /// The store's wall clock now (ms since 1970): the time its rules are read at.
    public var nowMillis: UInt64 { clock.nowMillis() }
    let cache = StoreCache()
    /// Concurrent reads' access entries, committed together (see ``GroupCommit``).
    let accessCommits = GroupCommit<AccessLogWrite>()
    /// The reserve for access entries on a full disk (none for a store in memory).
    let spill: AccessSpill?
    /// How far ahead of the wall clock a received change's timestamp may be.
    public var maximumDriftMillis: UInt64 = HybridLogicalClock.defaultMaximumDriftMillis

    /// The name of the database file inside a data directory.
    public static let databaseFileName = "casemesh.sqlite"

    init(writer: any DatabaseWriter, schema: CaseSchema, clock: any WallClock, spill: AccessSpill? = nil) throws {
        self.writer = writer
        self.spill = spill
        self.schema = schema
        self.clock = clock
        let info = try writer.read { db in
            try Row.fetchOne(db, sql: "SELECT replicaID, schemaVersion FROM replicaInfo WHERE singleton = 1")
        }
        guard let info else {
            throw StoreError(
                code: .notInitialized, message: "the data directory holds no replica; run 'casemesh init' first")
        }
        let storedVersion: Int = info["schemaVersion"]
        guard storedVersion <= schema.version else {
            throw StoreError(
                code: .schemaMismatch,
                message: "the store follows case schema \(storedVersion), newer than schema \(schema.version) of this "
                    + "casemesh: install the newer casemesh (or its schema with 'casemesh schema install')")
        }
        replicaID = try ReplicaID(info["replicaID"] as String)
        if storedVersion < schema.version { try upgradeSchema() }
    }

    static func configuration() -> Configuration {
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        // Readers at once: a served node reads for its peers' pulls and for every API
        // request; GRDB's default of 5 made requests queue behind long page reads.
        configuration.maximumReaderCount = 16
        configuration.prepareDatabase { db in
            // FULL: an acknowledged commit survives power loss as well as kill -9.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // Deleted content is overwritten with zeros, so a purged case (PIPA §21)
            // leaves nothing behind in free pages.
            try db.execute(sql: "PRAGMA secure_delete = ON")
            // 64 MiB of page cache: applying a batch touches pages all over the state tables.
            try db.execute(sql: "PRAGMA cache_size = -65536")
        }
        return configuration
    }

    /// Creates a new replica in `directory` (created if missing).
    ///
    /// - Throws: ``StoreError`` `alreadyInitialized` when the directory already holds one.
    public static func create(
        directory: String, replicaID: ReplicaID, schema: CaseSchema? = nil, clock: any WallClock = SystemWallClock()
    ) throws(StoreError) -> CaseStore {
        let path = (directory as NSString).appendingPathComponent(databaseFileName)
        if FileManager.default.fileExists(atPath: path) {
            throw StoreError(code: .alreadyInitialized, message: "\(directory) already holds a replica")
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw StoreError(
                code: .database, message: "\(directory) is a file, not a directory: give --data a directory")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
            let reason =
                underlying.map { String(cString: strerror(Int32(truncatingIfNeeded: $0.code))) }
                ?? "check that its parent folders exist, are folders and are writable"
            throw StoreError(code: .database, message: "cannot create the data directory \(directory): \(reason)")
        }
        let followed: CaseSchema
        if let schema { followed = schema } else { followed = try Self.schema(forDirectory: directory) }
        return try wrapDatabaseErrors {
            let pool = try DatabasePool(path: path, configuration: configuration())
            try initialize(pool, replicaID: replicaID, schema: followed, clock: clock)
            return try CaseStore(
                writer: pool, schema: followed, clock: clock, spill: AccessSpill.open(directory: directory))
        }
    }

    /// Opens the replica in `directory`, applying any pending store migrations, and
    /// moving it to a newer case schema (merging what it held for it).
    ///
    /// - Parameter schema: the case schema to follow; by default the directory's
    ///   (``schema(forDirectory:)``).
    /// - Throws: ``StoreError`` `notInitialized` when there is none.
    public static func open(
        directory: String, schema: CaseSchema? = nil, clock: any WallClock = SystemWallClock()
    ) throws(StoreError) -> CaseStore {
        let path = (directory as NSString).appendingPathComponent(databaseFileName)
        guard FileManager.default.fileExists(atPath: path) else {
            throw StoreError(
                code: .notInitialized, message: "no replica in \(directory); run 'casemesh init --replica ID' first")
        }
        let followed: CaseSchema
        if let schema { followed = schema } else { followed = try Self.schema(forDirectory: directory) }
        func openPool() throws(StoreError) -> CaseStore {
            try wrapDatabaseErrors {
                let pool = try DatabasePool(path: path, configuration: configuration())
                try Migrations.refuseNewer(pool, directory: directory)
                try Migrations.migrator.migrate(pool)
                return try CaseStore(
                    writer: pool, schema: followed, clock: clock, spill: AccessSpill.open(directory: directory))
            }
        }
        do {
            return try openPool()
        } catch  where error.isStorageFailure && AccessSpill.releaseRoom(in: directory) {
            // A full disk: SQLite could not rebuild its index file. The reserve's room
            // for it is given back and the store opened again, so cases can be read.
            return try openPool()
        }
    }

    /// Creates a replica in memory, for tests and simulations.
    public static func inMemory(
        replicaID: ReplicaID, schema: CaseSchema = .bundled, clock: any WallClock = SystemWallClock()
    ) throws(StoreError) -> CaseStore {
        try wrapDatabaseErrors {
            let queue = try DatabaseQueue(configuration: configuration())
            try initialize(queue, replicaID: replicaID, schema: schema, clock: clock)
            return try CaseStore(writer: queue, schema: schema, clock: clock)
        }
    }

    private static func initialize(
        _ writer: some DatabaseWriter, replicaID: ReplicaID, schema: CaseSchema, clock: any WallClock
    ) throws {
        try Migrations.migrator.migrate(writer)
        try writer.write { db in
            try db.execute(
                sql: """
                    INSERT INTO replicaInfo (singleton, replicaID, schemaVersion, clockPhysical, clockLogical, createdAt)
                    VALUES (1, ?, ?, 0, 0, ?)
                    """,
                arguments: [replicaID.rawValue, schema.version, Int64(clock.nowMillis())])
        }
    }

    /// Runs `body`, turning any error that is not already a ``StoreError`` into one.
    static func wrapDatabaseErrors<T>(_ body: () throws -> T) throws(StoreError) -> T {
        do {
            return try body()
        } catch let error as StoreError {
            throw error
        } catch let error as CRDTError {
            throw StoreError(code: .invalidWrite, message: error.message, cause: error)
        } catch let error as ModelError {
            throw StoreError(code: .invalidWrite, message: error.message, cause: error)
        } catch let error as DatabaseError {
            throw StoreError(
                code: .database, message: "database error: \(error.message ?? "\(error.resultCode)")", cause: error)
        } catch {
            throw StoreError(code: .database, message: "storage error: \(error)")
        }
    }

    /// Runs a read-only query.
    func read<T: Sendable>(_ body: @Sendable (Database) throws -> T) throws(StoreError) -> T {
        try Self.wrapDatabaseErrors { try writer.read(body) }
    }

    /// Runs one write transaction.
    func write<T: Sendable>(_ body: @Sendable (Database) throws -> T) throws(StoreError) -> T {
        try Self.wrapDatabaseErrors { try writer.write(body) }
    }

    /// Runs one write transaction with an apply session over the store's cache.
    ///
    /// - Parameter checkpoint: whether to write out materialized state at the end
    ///   (the last transaction of a write call), or only the change log.
    func withApplySession<T: Sendable>(
        wallMillis: UInt64, checkpoint: Bool, _ body: @Sendable (ApplySession) throws -> T
    ) throws(StoreError) -> T {
        let schema = schema
        let drift = maximumDriftMillis
        let cache = cache
        return try Self.wrapDatabaseErrors {
            try cache.withLock { cache in
                try writer.write { db in
                    let session = try ApplySession(
                        db: db, schema: schema, wallMillis: wallMillis, maximumDriftMillis: drift, cache: cache)
                    defer { session.close() }
                    session.receiver = self.replicaID
                    let result = try body(session)
                    try session.flush(checkpoint: checkpoint)
                    return result
                }
            }
        }
    }
}
