import CaseMeshCRDT
import CaseMeshModel
import Foundation
import GRDB

extension CaseStore {
    /// Destroys access-log entries more than `days` days old by this store's clock
    /// (see ``pruneAccessLogs(recordedBefore:)``).
    @discardableResult
    public func pruneAccessLogs(olderThanDays days: Int) throws(StoreError) -> Int {
        let now = clock.nowMillis()
        return try pruneAccessLogs(recordedBefore: now - min(now, UInt64(max(0, days)) * 86_400_000))
    }

    /// Destroys access-log entries recorded before `cutoffMillis` (the end of their
    /// retention period; PIPA asks for at least two years for sensitive data).
    ///
    /// Each such entry's operation is replaced, in the stored change, by its digest (as
    /// a withheld operation), so the change keeps its place in the case's history and
    /// its origin's seal still verifies, and the entry is removed from the access log
    /// as held here; peers that receive the change later get it pruned too.
    ///
    /// - Returns: how many entries were destroyed.
    @discardableResult
    public func pruneAccessLogs(recordedBefore cutoffMillis: UInt64) throws(StoreError) -> Int {
        try withApplySession(wallMillis: clock.nowMillis(), checkpoint: true) { _ in }
        let cache = cache
        let pruned: Int = try Self.wrapDatabaseErrors {
            try cache.withLock { cache in
                try writer.write { db -> Int in
                    guard try LogTail(db).isEmpty,
                        let fieldRef = try Int64.fetchOne(
                            db, sql: "SELECT id FROM fieldName WHERE name = ?",
                            arguments: [Self.accessLogField.storageKey])
                    else { return 0 }
                    let logs = Set(
                        try Int64.fetchAll(
                            db, sql: "SELECT caseRef FROM fieldState WHERE fieldRef = ?", arguments: [fieldRef]))
                    guard !logs.isEmpty else { return 0 }
                    let coder = try ReplicaTableCoder(db)
                    var caseKeys: [Int64: String] = [:]
                    var destroyed = 0
                    for row in try Row.fetchAll(db, sql: "SELECT id, body FROM changeSegment ORDER BY id") {
                        var entries = try ChangeLogSegment.entries(of: [UInt8](row[1] as Data))
                        var changed = false
                        for index in entries.indices
                        where !entries[index].isBlank && logs.contains(entries[index].caseRef) {
                            let entry = entries[index]
                            if caseKeys[entry.caseRef] == nil {
                                caseKeys[entry.caseRef] = try String.fetchOne(
                                    db, sql: "SELECT caseKey FROM caseRecord WHERE id = ?", arguments: [entry.caseRef])
                            }
                            guard let caseKey = caseKeys[entry.caseRef], let origin = coder.names[entry.replicaRef]
                            else {
                                continue
                            }
                            var change = try Change(
                                decoding: Change.encoded(caseID: caseKey, origin: origin.rawValue, rest: entry.rest))
                            guard change.hlc.physical < cutoffMillis else { continue }
                            var touched = false
                            for (position, op) in change.ops.enumerated() {
                                if case .append(let field, _) = op, field == Self.accessLogField {
                                    change.ops[position] = .withheld(field, digest: SealDigest.operation(op))
                                    touched = true
                                    destroyed += 1
                                }
                            }
                            guard touched else { continue }
                            let canonical = change.encoded()
                            entries[index].rest = Array(canonical[try Change.headerLength(ofEncoded: canonical)...])
                            changed = true
                        }
                        guard changed else { continue }
                        var segment = ChangeLogSegment()
                        for entry in entries { segment.append(entry) }
                        try db.execute(
                            sql: "UPDATE changeSegment SET body = ? WHERE id = ?",
                            arguments: [Data(segment.writer.bytes), row[0]])
                    }
                    // The access logs as held here, without the destroyed entries.
                    for caseRef in logs {
                        guard
                            let data = try Data.fetchOne(
                                db, sql: "SELECT state FROM fieldState WHERE caseRef = ? AND fieldRef = ?",
                                arguments: [caseRef, fieldRef]),
                            case .log(let log) = try FieldState(decoding: [UInt8](data), coder: coder)
                        else { continue }
                        let kept = log.entries.filter { $0.hlc.physical >= cutoffMillis }
                        guard kept.count != log.entries.count else { continue }
                        let ids = Set(kept.map(\.id))
                        let state = FieldState.log(
                            LogState(entries: kept, redactions: log.redactions.filter { ids.contains($0.key) }))
                        try db.execute(
                            sql: "UPDATE fieldState SET state = ? WHERE caseRef = ? AND fieldRef = ?",
                            arguments: [Data(try state.encoded(coder: coder)), caseRef, fieldRef])
                    }
                    cache.invalidateLocked()
                    return destroyed
                }
            }
        }
        if pruned > 0 {
            try Self.wrapDatabaseErrors {
                try writer.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
            }
        }
        return pruned
    }
}
