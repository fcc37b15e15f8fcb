public import CaseMeshCRDT
import CaseMeshModel
import Foundation
import GRDB

/// A case this node gave up because its institution stopped being entitled to it.
public struct PurgedCase: Hashable, Sendable {
    public var caseID: CaseID
    public var purgedAtMillis: UInt64
    public var reason: String
}

extension CaseStore {
    /// Purges every case this node's institution is no longer entitled to
    /// (``Entitlement``: removed from the participants, consent withdrawn or expired).
    ///
    /// A purged case loses its changes (each is blanked in the change log, so the
    /// log's arrival numbers and peers' cursors stay valid), its field states and its
    /// pending changes. A tombstone keeps the case ID, the version vector held and
    /// the state of the fields that decide entitlement (institution IDs and dates),
    /// so the same changes arriving again through a relay are dropped, and a change
    /// that brings the institution back is recognised: then the sender's whole
    /// history of the case is applied again.
    ///
    /// - Returns: the cases purged now.
    @discardableResult
    public func purgeUnentitledCases() throws(StoreError) -> [PurgedCase] {
        // Materialized state first, so the entitlement is read from checkpointed rows.
        try withApplySession(wallMillis: clock.nowMillis(), checkpoint: true) { _ in }
        let schema = schema
        let institution = replicaID.institution
        let now = clock.nowMillis()
        let cache = cache
        let purged: [PurgedCase] = try Self.wrapDatabaseErrors {
            try cache.withLock { cache in
                try writer.write { db -> [PurgedCase] in
                    guard try LogTail(db).isEmpty else { return [] }
                    let coder = try ReplicaTableCoder(db)
                    var gates: [Int64: [FieldKey: FieldState]] = [:]
                    let rows = try Row.fetchCursor(
                        db,
                        sql: """
                            SELECT fieldState.caseRef, fieldName.name, fieldState.state FROM fieldState
                            JOIN fieldName ON fieldName.id = fieldState.fieldRef
                            WHERE fieldName.name IN ('case.participants', 'case.leadInstitution')
                            OR fieldName.name LIKE 'consent#%'
                            """)
                    while let row = try rows.next() {
                        gates[row[0], default: [:]][try FieldKey(parsing: row[1] as String)] = try FieldState(
                            decoding: [UInt8](row[2] as Data), coder: coder)
                    }
                    var purged: [PurgedCase] = []
                    let live = try Row.fetchAll(
                        db,
                        sql: """
                            SELECT id, caseKey, version FROM caseRecord
                            WHERE id NOT IN (SELECT caseRef FROM caseTombstone) ORDER BY id
                            """)
                    var doomed: [(ref: Int64, caseID: CaseID, version: Data, reason: String)] = []
                    for row in live {
                        let fields = gates[row[0]] ?? [:]
                        let entitlement = Entitlement(of: institution, fields: fields, schema: schema, nowMillis: now)
                        guard !entitlement.receivesCase else { continue }
                        doomed.append((row[0], try CaseID(row[1] as String), row[2], Self.reason(institution, fields)))
                    }
                    guard !doomed.isEmpty else { return [] }
                    try Self.blankChanges(db, ofCases: Set(doomed.map(\.ref)))
                    for item in doomed {
                        var gate = BinaryWriter()
                        let fields = gates[item.ref] ?? [:]
                        gate.writeVarint(UInt64(fields.count))
                        for (key, state) in fields.sorted(by: { $0.key.storageKey < $1.key.storageKey }) {
                            gate.writeString(key.storageKey)
                            gate.writeBlob(state.encoded())
                        }
                        try db.execute(sql: "DELETE FROM fieldState WHERE caseRef = ?", arguments: [item.ref])
                        try db.execute(sql: "DELETE FROM participantGrant WHERE caseRef = ?", arguments: [item.ref])
                        try db.execute(
                            sql: "DELETE FROM pendingChange WHERE caseKey = ?", arguments: [item.caseID.rawValue])
                        try db.execute(sql: "UPDATE caseRecord SET version = x'' WHERE id = ?", arguments: [item.ref])
                        try db.execute(
                            sql: """
                                INSERT OR REPLACE INTO caseTombstone (caseRef, purgedAt, reason, version, gateFields)
                                VALUES (?, ?, ?, ?, ?)
                                """,
                            arguments: [item.ref, Int64(now), item.reason, item.version, Data(gate.bytes)])
                        purged.append(PurgedCase(caseID: item.caseID, purgedAtMillis: now, reason: item.reason))
                    }
                    // The cache holds decoded states and versions of these cases.
                    cache.invalidateLocked()
                    return purged
                }
            }
        }
        if !purged.isEmpty {
            // The write-ahead log still holds the pages as they were: copy it back and
            // truncate it (best effort: a reader in the middle of a read delays it).
            try Self.wrapDatabaseErrors {
                try writer.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
            }
        }
        return purged
    }

    /// Cases purged here, with when and why.
    public func purgedCases() throws(StoreError) -> [PurgedCase] {
        try read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT caseRecord.caseKey, purgedAt, reason FROM caseTombstone
                    JOIN caseRecord ON caseRecord.id = caseTombstone.caseRef ORDER BY caseRecord.caseKey
                    """
            ).map { row in
                PurgedCase(
                    caseID: try CaseID(row[0] as String), purgedAtMillis: UInt64(row[1] as Int64), reason: row[2])
            }
        }
    }

    private static func reason(_ institution: InstitutionID, _ fields: [FieldKey: FieldState]) -> String {
        if case .set(let participants)? = fields[Entitlement.participants],
            participants.contains(institution.rawValue, .addWins)
        {
            return "no valid consent covers \(institution) (withdrawn or expired)"
        }
        return "\(institution) is no longer a participant"
    }

    /// Replaces every stored change of these cases by a blank entry (see
    /// ``ChangeLogSegment/Entry/isBlank``), rewriting only the segments that hold one.
    static func blankChanges(_ db: Database, ofCases cases: Set<Int64>) throws {
        let segments = try Row.fetchAll(db, sql: "SELECT id, body FROM changeSegment ORDER BY id")
        for row in segments {
            let entries = try ChangeLogSegment.entries(of: [UInt8](row[1] as Data))
            guard entries.contains(where: { !$0.isBlank && cases.contains($0.caseRef) }) else { continue }
            var segment = ChangeLogSegment()
            for entry in entries {
                segment.append(cases.contains(entry.caseRef) ? .blank(caseRef: entry.caseRef) : entry)
            }
            try db.execute(
                sql: "UPDATE changeSegment SET body = ? WHERE id = ?", arguments: [Data(segment.writer.bytes), row[0]])
        }
    }
}
