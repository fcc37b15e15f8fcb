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
        let replicaID = replicaID
        let now = clock.nowMillis()
        let cache = cache
        let purged: [PurgedCase] = try Self.wrapDatabaseErrors {
            try cache.withLock { cache in
                try writer.write { db -> [PurgedCase] in
                    guard try LogTail(db).isEmpty else { return [] }
                    let withdrawn = try Self.withdrawnCases(db, replicaID: replicaID, schema: schema, nowMillis: now)
                    let doomed = withdrawn.filter { $0.ownChangesDelivered }
                    guard !doomed.isEmpty else { return [] }
                    try Self.blankChanges(db, ofCases: Set(doomed.map(\.caseRef)))
                    var purged: [PurgedCase] = []
                    for item in doomed {
                        var gate = BinaryWriter()
                        gate.writeVarint(UInt64(item.ruleFields.count))
                        for (key, state) in item.ruleFields.sorted(by: { $0.key.storageKey < $1.key.storageKey }) {
                            gate.writeString(key.storageKey)
                            gate.writeBlob(state.encoded())
                        }
                        try db.execute(sql: "DELETE FROM fieldState WHERE caseRef = ?", arguments: [item.caseRef])
                        try db.execute(sql: "DELETE FROM caseSummary WHERE caseRef = ?", arguments: [item.caseRef])
                        try db.execute(sql: "DELETE FROM participantGrant WHERE caseRef = ?", arguments: [item.caseRef])
                        try db.execute(sql: "DELETE FROM roleGrant WHERE caseRef = ?", arguments: [item.caseRef])
                        for table in ["pendingChange", "departureNotice", "heldChange"] {
                            try db.execute(
                                sql: "DELETE FROM \(table) WHERE caseKey = ?", arguments: [item.caseID.rawValue])
                        }
                        // What was kept aside of the case goes too (a refused change
                        // carries the household's data); the entry stays as a record of
                        // the refusal, closed, without the body.
                        try db.execute(
                            sql: """
                                UPDATE quarantine SET body = x'', sealRef = NULL, resolvedAt = COALESCE(resolvedAt, ?),
                                    reason = reason || ' (the case was purged here; its body erased)'
                                WHERE caseKey = ?
                                """,
                            arguments: [Int64(now), item.caseID.rawValue])
                        let version =
                            try Data.fetchOne(
                                db, sql: "SELECT version FROM caseRecord WHERE id = ?", arguments: [item.caseRef])
                            ?? Data()
                        try db.execute(
                            sql: "UPDATE caseRecord SET version = x'' WHERE id = ?", arguments: [item.caseRef])
                        try db.execute(
                            sql: """
                                INSERT OR REPLACE INTO caseTombstone (caseRef, purgedAt, reason, version, gateFields)
                                VALUES (?, ?, ?, ?, ?)
                                """,
                            arguments: [item.caseRef, Int64(now), item.reason, version, Data(gate.bytes)])
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

    /// A case this node still holds although its institution may no longer hold it.
    struct WithdrawnCase {
        var caseRef: Int64
        var caseID: CaseID
        var reason: String
        /// The rule fields, with departure notices laid over them.
        var ruleFields: [FieldKey: FieldState]
        /// Whether every change this node wrote to the case has reached a peer (or a
        /// bundle) of an institution that may still hold it: only then may it purge.
        var ownChangesDelivered: Bool
    }

    /// Why this node's users may no longer see a case, or `nil` when they may.
    ///
    /// A case whose right ended (a withdrawal, a removal, an expired consent) stays on
    /// the node only until its own edits have gone out (see ``purgeUnentitledCases()``);
    /// meanwhile its data is not shown to anyone.
    public func withdrawal(of caseID: CaseID) throws(StoreError) -> String? {
        let schema = schema
        let replicaID = replicaID
        let now = clock.nowMillis()
        return try read { db in
            guard
                let caseRef = try Int64.fetchOne(
                    db, sql: "SELECT id FROM caseRecord WHERE caseKey = ?", arguments: [caseID.rawValue])
            else { return nil }
            if let reason = try String.fetchOne(
                db, sql: "SELECT reason FROM caseTombstone WHERE caseRef = ?", arguments: [caseRef])
            {
                return "purged from this node: \(reason)"
            }
            let found = try Self.withdrawnCases(
                db, replicaID: replicaID, schema: schema, nowMillis: now, only: caseRef, checkDelivery: false)
            return found.first.map { "withdrawn from \(replicaID.institution): \($0.reason)" }
        }
    }

    /// The live cases this node's institution is no longer entitled to.
    ///
    /// The rule is read from the checkpointed rule fields with the log's tail and
    /// every departure notice held for the case laid over them: a notice that cannot
    /// be merged (its history is not here) still takes effect.
    static func withdrawnCases(
        _ db: Database, replicaID: ReplicaID, schema: CaseSchema, nowMillis: UInt64, only: Int64? = nil,
        checkDelivery: Bool = true
    ) throws -> [WithdrawnCase] {
        let institution = replicaID.institution
        let coder = try ReplicaTableCoder(db)
        let tail = try LogTail(db)
        var gates: [Int64: [FieldKey: FieldState]] = [:]
        // One case (a read or a write by a person: an indexed lookup) or all of them.
        let filter = only.map { "= \($0)" }
        if let only {
            gates[only] = try CaseStore.gateFields(
                caseRef: only, statement: db.cachedStatement(sql: CaseStore.gateFieldsSQL), coder: coder)
        } else {
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
        }
        var notices: [Int64: [Change]] = [:]
        for row in try Row.fetchAll(
            db,
            sql: """
                SELECT caseRecord.id, departureNotice.body FROM departureNotice
                JOIN caseRecord ON caseRecord.caseKey = departureNotice.caseKey
                \(filter.map { "WHERE caseRecord.id \($0)" } ?? "")
                """)
        {
            if let change = try? Change(decoding: [UInt8](row[1] as Data)) {
                notices[row[0], default: []].append(change)
            }
        }
        let live = try Row.fetchAll(
            db,
            sql: """
                SELECT id, caseKey FROM caseRecord
                WHERE id NOT IN (SELECT caseRef FROM caseTombstone) \(filter.map { "AND id \($0)" } ?? "") ORDER BY id
                """)
        var found: [WithdrawnCase] = []
        for row in live {
            let caseRef: Int64 = row[0]
            var fields = gates[caseRef] ?? [:]
            if !tail.changes(ofCase: caseRef).isEmpty {
                var version = VersionVector()
                try tail.replay(ofCase: caseRef, fields: &fields, version: &version, schema: schema)
                fields = fields.filter { Entitlement.isGate($0.key) }
            }
            for notice in (notices[caseRef] ?? []).sorted(by: Change.causalOrder) {
                for (index, op) in notice.ops.enumerated() where !op.isWithheld && Entitlement.isGate(op.field) {
                    var state = fields[op.field] ?? .empty(for: op)
                    guard state.accepts(op) else { continue }
                    try state.apply(op, index: index, of: notice, semantics: schema.setSemantics(for: op.field))
                    fields[op.field] = state
                }
            }
            guard !Entitlement(of: institution, fields: fields, schema: schema, nowMillis: nowMillis).receivesCase
            else { continue }
            found.append(
                WithdrawnCase(
                    caseRef: caseRef, caseID: try CaseID(row[1] as String), reason: reason(institution, fields),
                    ruleFields: fields, ownChangesDelivered: false))
        }
        guard checkDelivery, !found.isEmpty else { return found }
        // Each own change of the case must have gone out whole: the highest own
        // sequence number delivered covers the one this node holds.
        let coderNames = coder.names
        for index in found.indices {
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT caseRecord.version, ownDelivery.seq FROM caseRecord
                    LEFT JOIN ownDelivery ON ownDelivery.caseRef = caseRecord.id WHERE caseRecord.id = ?
                    """, arguments: [found[index].caseRef])
            var reader = BinaryReader([UInt8]((row?[0] as Data?) ?? Data()))
            var ownSeq: UInt64 = 0
            while !reader.isAtEnd {
                let ref = Int64(bitPattern: try reader.readVarint())
                let seq = try reader.readVarint()
                if coderNames[ref] == replicaID { ownSeq = seq }
            }
            let delivered = UInt64(clamping: (row?[1] as Int64?) ?? 0)
            found[index].ownChangesDelivered = ownSeq <= delivered
        }
        return found
    }

    /// Records that this node's own changes a peer acknowledged, or an exported
    /// bundle carries, have gone out (see ``LogPage/ownChangesSent``): a case
    /// withdrawn from this institution is purged only once all of them have.
    public func recordDelivered(_ sent: OwnChangesSent) throws(StoreError) {
        guard !sent.isEmpty else { return }
        try write { db in
            let upsert = try db.cachedStatement(
                sql: """
                    INSERT INTO ownDelivery (caseRef, seq) VALUES (?, ?)
                    ON CONFLICT (caseRef) DO UPDATE SET seq = max(ownDelivery.seq, excluded.seq)
                    """)
            for (caseRef, seq) in sent.maximumSeq {
                try upsert.execute(arguments: [caseRef, Int64(clamping: seq)])
            }
        }
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

    static func reason(_ institution: InstitutionID, _ fields: [FieldKey: FieldState]) -> String {
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
