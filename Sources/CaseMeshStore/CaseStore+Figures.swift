public import CaseMeshCRDT
import Foundation
import GRDB

/// What an operator watches of a store: counts for health checks and metrics.
/// None of it is personal data.
public struct StoreFigures: Hashable, Sendable {
    /// Cases held and listed (access logs and purged cases not counted).
    public var casesHeld: Int
    /// Open conflicts over every case.
    public var openConflicts: Int
    /// Quarantined changes not yet resolved.
    public var quarantined: Int
    /// Changes waiting for their causal dependencies.
    public var pending: Int
    /// Changes with operations held for a newer case schema than this node's.
    public var heldForNewerSchema: Int
    /// Cases purged from this node (tombstones kept).
    public var purged: Int
    /// The change log's length.
    public var logLength: UInt64
    /// The database's size in bytes, its write-ahead log included.
    public var storeBytes: Int64
}

extension CaseStore {
    /// The store's figures, read in one transaction.
    public func figures() throws(StoreError) -> StoreFigures {
        let path = writer.path
        return try read { db in
            let summary = try Row.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*), COALESCE(SUM(conflicts), 0) FROM caseSummary
                    WHERE accessLog = 0 AND caseRef NOT IN (SELECT caseRef FROM caseTombstone)
                    """)
            let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            let pageSize = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 0
            let wal = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int64) ?? 0
            return StoreFigures(
                casesHeld: summary?[0] ?? 0, openConflicts: summary?[1] ?? 0,
                quarantined: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM quarantine WHERE resolvedAt IS NULL")
                    ?? 0,
                pending: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM pendingChange") ?? 0,
                heldForNewerSchema: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM heldChange") ?? 0,
                purged: try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM caseTombstone") ?? 0,
                logLength: UInt64(
                    max(
                        0,
                        try Int64.fetchOne(
                            db, sql: "SELECT COALESCE(MAX(firstArrival + changeCount), 1) - 1 FROM changeSegment") ?? 0)
                ),
                storeBytes: pages * pageSize + wal)
        }
    }

    /// Whether the store takes a write now (a real one-row write, rolled into the
    /// WAL like any other): false on a full disk, a read-only mount or a lost file.
    public func isWritable() -> Bool {
        do {
            try write { db in
                try db.execute(sql: "UPDATE replicaInfo SET clockLogical = clockLogical WHERE singleton = 1")
            }
            return true
        } catch {
            return false
        }
    }
}

extension CaseStore {
    /// The changes of a case that wait for their causal dependencies, by dot (for
    /// `check` and the harness: what waits, and for whom).
    public func pendingDots(of caseID: CaseID) throws(StoreError) -> Set<Dot> {
        try read { db in
            var dots: Set<Dot> = []
            for row in try Row.fetchAll(
                db, sql: "SELECT origin, seq FROM pendingChange WHERE caseKey = ?", arguments: [caseID.rawValue])
            {
                guard let origin = try? ReplicaID(row[0] as String) else { continue }
                dots.insert(Dot(origin: origin, seq: UInt64(clamping: row[1] as Int64)))
            }
            return dots
        }
    }
}
