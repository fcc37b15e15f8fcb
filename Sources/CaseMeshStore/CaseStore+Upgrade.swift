import CaseMeshCRDT
public import CaseMeshModel
import Foundation
import GRDB

/// Case schema versions across a consortium (see `Upgrading.md`).
///
/// Institutions upgrade on different days. A node on an older schema receives
/// changes that write fields it does not have yet: it merges the rest of each
/// change, keeps the change in its log (so it relays it), and holds the
/// operations on the unknown fields in `heldChange`. When the node's schema
/// becomes newer (a newer casemesh, or `casemesh schema install`), opening the
/// store merges the held operations, in the order they were held, and records the
/// new version.
extension CaseStore {
    /// The file in a data directory holding the case schema installed there.
    public static let schemaFileName = "case-schema.json"

    /// The case schema a data directory's node follows: the one installed there
    /// (``installSchema(_:directory:)``) when it is newer than this build's, else this
    /// build's (a newer casemesh supersedes an installed file it has caught up with).
    ///
    /// - Throws: ``StoreError`` `schemaMismatch` when the installed file does not load.
    public static func schema(forDirectory directory: String) throws(StoreError) -> CaseSchema {
        let path = (directory as NSString).appendingPathComponent(schemaFileName)
        guard let bytes = FileManager.default.contents(atPath: path) else { return .bundled }
        let installed: CaseSchema
        do {
            installed = try CaseSchema(json: [UInt8](bytes))
        } catch {
            throw StoreError(code: .schemaMismatch, message: "the case schema installed at \(path): \(error.message)")
        }
        return installed.version > CaseSchema.bundled.version ? installed : .bundled
    }

    /// Installs a newer case schema in a data directory, for the node to follow from
    /// its next start. The node must be stopped (the caller holds the directory).
    ///
    /// - Returns: the versions before and after.
    /// - Throws: ``StoreError`` `schemaMismatch` when the file does not load, is not
    ///   newer, or changes what the current schema has (``CaseSchema/checkUpgrade(from:)``).
    public static func installSchema(_ json: [UInt8], directory: String) throws(StoreError) -> (from: Int, to: Int) {
        let current = try schema(forDirectory: directory)
        let candidate: CaseSchema
        do {
            candidate = try CaseSchema(json: json)
            try candidate.checkUpgrade(from: current)
        } catch {
            throw StoreError(code: .schemaMismatch, message: error.message)
        }
        guard candidate.version > current.version else {
            throw StoreError(
                code: .schemaMismatch,
                message: "the node already follows case schema \(current.version); this file is version "
                    + "\(candidate.version)")
        }
        let path = (directory as NSString).appendingPathComponent(schemaFileName)
        guard FileManager.default.createFile(atPath: path + ".new", contents: Data(json)) else {
            throw StoreError(code: .database, message: "cannot write \(path)")
        }
        guard rename(path + ".new", path) == 0 else {
            throw StoreError(code: .database, message: "cannot install \(path): \(String(cString: strerror(errno)))")
        }
        return (current.version, candidate.version)
    }

    /// Changes held for a newer case schema: how many, and the fields they write.
    public struct HeldForNewerSchema: Hashable, Sendable {
        public var changes: Int
        /// The fields held operations write (`entity.field`), sorted.
        public var fields: [String]
    }

    /// What this node holds for a newer case schema than its own.
    public func heldForNewerSchema() throws(StoreError) -> HeldForNewerSchema {
        try read { db in
            var fields: Set<String> = []
            var count = 0
            for row in try Row.fetchAll(db, sql: "SELECT body, operations FROM heldChange") {
                count += 1
                guard let change = try? Change(decoding: [UInt8](row[0] as Data)) else { continue }
                for index in Self.indices(row[1]) where change.ops.indices.contains(index) {
                    let field = change.ops[index].field
                    fields.insert("\(field.entity).\(field.field)")
                }
            }
            return HeldForNewerSchema(changes: count, fields: fields.sorted())
        }
    }

    private static func indices(_ text: String) -> [Int] {
        text.split(separator: ",").compactMap { Int($0) }
    }

    /// Moves the store from its older case schema to this store's schema, in
    /// one transaction: first the state an older node materialized is settled (the
    /// log's tail merged without the fields it lacked, and checkpointed), then every
    /// held operation whose field the schema now has is merged, in the order held.
    func upgradeSchema() throws {
        let schema = schema
        let drift = maximumDriftMillis
        let now = clock.nowMillis()
        let receiver = replicaID
        try cache.withLock { cache in
            try writer.write { db in
                var held: [(id: Int64, change: Change, operations: [Int])] = []
                for row in try Row.fetchAll(db, sql: "SELECT id, body, operations FROM heldChange ORDER BY id") {
                    let change = try Change(decoding: [UInt8](row[1] as Data))
                    held.append((row[0], change, Self.indices(row[2])))
                }
                if !held.isEmpty {
                    let lacked = held.flatMap { item in
                        item.operations.filter { item.change.ops.indices.contains($0) }.map {
                            item.change.ops[$0].field
                        }
                    }
                    let older = try ApplySession(
                        db: db, schema: schema.forgetting(lacked), wallMillis: now, maximumDriftMillis: drift,
                        cache: StoreCache())
                    older.receiver = receiver
                    try older.flush(checkpoint: true)
                    older.close()
                    let session = try ApplySession(
                        db: db, schema: schema, wallMillis: now, maximumDriftMillis: drift, cache: StoreCache())
                    defer { session.close() }
                    session.receiver = receiver
                    for item in held {
                        let still = try session.mergeHeld(item.change, operations: item.operations)
                        if still.isEmpty {
                            try db.execute(sql: "DELETE FROM heldChange WHERE id = ?", arguments: [item.id])
                        } else {
                            try db.execute(
                                sql: "UPDATE heldChange SET operations = ? WHERE id = ?",
                                arguments: [still.map(String.init).joined(separator: ","), item.id])
                        }
                    }
                    try session.flush(checkpoint: true)
                }
                try db.execute(
                    sql: "UPDATE replicaInfo SET schemaVersion = ? WHERE singleton = 1", arguments: [schema.version])
            }
            cache.invalidateLocked()
        }
    }
}
