import CaseMeshCRDT
import CaseMeshModel
import Foundation
import GRDB

/// Applies changes inside one write transaction: the hot path.
///
/// Each change is appended to the change log (durable when the transaction
/// commits) and merged into the decoded field states and version vectors of the
/// ``StoreCache``. Those are written out at checkpoints (``flush(checkpoint:)``),
/// so all writes to a field between two checkpoints collapse into one; the log's
/// tail since the last checkpoint is what a cold cache or a reader replays.
///
/// - Important: A session lives inside one `DatabaseWriter.write` closure, under the
///   cache's lock, and ``flush(checkpoint:)`` must run before the closure returns.
final class ApplySession {
    typealias StateKey = StoreCache.StateKey

    private let db: Database
    /// The transaction's connection, for writes that belong with the batch.
    var database: Database { db }
    private let schema: CaseSchema
    let wallMillis: UInt64
    private let cache: StoreCache
    private(set) var clock: HybridLogicalClock
    private var touchedCases: Set<Int64> = []
    /// The last few replicas interned, checked before the hash table.
    private var recentReplicas: [(replica: ReplicaID, ref: Int64)] = []
    private var deferredAny = false
    /// The peer (or bundle source) the changes being received came from.
    var sender: ReplicaID?
    /// The replica receiving (whose institution's departure notices matter here).
    var receiver: ReplicaID?
    /// Whether local changes are held to the role rule receivers apply (off only
    /// for tests that play a hostile node).
    var checksRoles = true
    /// Unresolved quarantine entries and their body bytes, once looked up.
    private var quarantineUsage: (rows: Int64, bytes: Int64)?
    /// Changes held for a newer schema and their body bytes, once looked up.
    private var heldUsage: (rows: Int64, bytes: Int64)?
    private var institutionNames: [ReplicaID: String] = [:]
    private var segment = ChangeLogSegment()
    private var nextArrival: Int64
    private let selectState: RawStatement
    private let upsertState: RawStatement
    private let updateVersion: RawStatement

    init(db: Database, schema: CaseSchema, wallMillis: UInt64, maximumDriftMillis: UInt64, cache: StoreCache) throws {
        self.db = db
        self.schema = schema
        self.wallMillis = wallMillis
        self.cache = cache
        let dataVersion = try Int64.fetchOne(db, sql: "PRAGMA data_version")
        if cache.dataVersion != dataVersion {
            cache.invalidateLocked()
            cache.dataVersion = dataVersion
        }
        cache.trimLocked()
        let row = try Row.fetchOne(db, sql: "SELECT clockPhysical, clockLogical FROM replicaInfo WHERE singleton = 1")
        let physical: Int64 = row?["clockPhysical"] ?? 0
        let logical: Int64 = row?["clockLogical"] ?? 0
        clock = HybridLogicalClock(
            latest: HybridTimestamp(physical: UInt64(physical), logical: UInt32(logical)),
            maximumDriftMillis: maximumDriftMillis)
        nextArrival =
            try Int64.fetchOne(
                db, sql: "SELECT firstArrival + changeCount FROM changeSegment ORDER BY id DESC LIMIT 1") ?? 1
        selectState = try RawStatement(db, "SELECT state FROM fieldState WHERE caseRef = ? AND fieldRef = ?")
        upsertState = try RawStatement(
            db,
            "INSERT INTO fieldState (caseRef, fieldRef, conflicted, state) VALUES (?, ?, ?, ?) "
                + "ON CONFLICT (caseRef, fieldRef) DO UPDATE SET conflicted = excluded.conflicted, state = excluded.state"
        )
        updateVersion = try RawStatement(db, "UPDATE caseRecord SET version = ? WHERE id = ?")
        if !cache.tailReplayed {
            try replayTail()
            cache.tailReplayed = true
        }
    }

    /// Merges the log's tail into a cold cache, so it holds what every reader sees.
    private func replayTail() throws {
        let tail = try LogTail(db)
        for entry in tail.entries {
            _ = try version(ofCase: entry.caseRef)
            try merge(entry.change, caseRef: entry.caseRef)
        }
    }

    /// Releases the raw statements; the session is done.
    func close() {
        for statement in [selectState, upsertState, updateVersion] { statement.finalize() }
    }

    // MARK: Identifiers and versions

    func caseRef(_ caseID: CaseID, create: Bool) throws -> Int64? {
        if let ref = cache.caseRefs[caseID] { return ref }
        let select = try db.cachedStatement(sql: "SELECT id, version FROM caseRecord WHERE caseKey = ?")
        if let row = try Row.fetchOne(select, arguments: [caseID.rawValue]) {
            let ref: Int64 = row[0]
            cache.caseRefs[caseID] = ref
            if cache.versions[ref] == nil { cache.versions[ref] = try decodeVersion(row[1]) }
            return ref
        }
        guard create else { return nil }
        try db.cachedStatement(sql: "INSERT INTO caseRecord (caseKey) VALUES (?)").execute(arguments: [caseID.rawValue])
        let ref = db.lastInsertedRowID
        cache.caseRefs[caseID] = ref
        cache.versions[ref] = VersionVector()
        cache.companions?[CaseStore.accessLogCase(of: caseID)] = ref
        return ref
    }

    /// The case ID a `caseRecord.id` stands for.
    func caseKey(ofRef caseRef: Int64) throws -> String {
        guard
            let key = try String.fetchOne(
                db.cachedStatement(sql: "SELECT caseKey FROM caseRecord WHERE id = ?"), arguments: [caseRef])
        else { throw StoreError(code: .corrupt, message: "a changed case went missing from caseRecord") }
        return key
    }

    func replicaRef(_ replica: ReplicaID) throws -> Int64 {
        // A batch comes from a handful of origins: comparing a few IDs beats hashing one.
        for recent in recentReplicas where recent.replica == replica { return recent.ref }
        let ref = try internReplica(replica)
        if recentReplicas.count == 8 { recentReplicas.removeFirst() }
        recentReplicas.append((replica, ref))
        return ref
    }

    private func internReplica(_ replica: ReplicaID) throws -> Int64 {
        if let ref = cache.replicaRefs[replica] { return ref }
        let select = try db.cachedStatement(sql: "SELECT id FROM replica WHERE name = ?")
        let ref: Int64
        if let existing = try Int64.fetchOne(select, arguments: [replica.rawValue]) {
            ref = existing
        } else {
            try db.cachedStatement(sql: "INSERT INTO replica (name) VALUES (?)").execute(arguments: [replica.rawValue])
            ref = db.lastInsertedRowID
        }
        cache.replicaRefs[replica] = ref
        cache.replicaNames[ref] = replica
        return ref
    }

    func fieldRef(_ key: FieldKey) throws -> Int64 {
        if let ref = cache.fieldRefs[key] { return ref }
        let name = key.storageKey
        let ref: Int64
        if let existing = try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT id FROM fieldName WHERE name = ?"), arguments: [name])
        {
            ref = existing
        } else {
            try db.cachedStatement(sql: "INSERT INTO fieldName (name) VALUES (?)").execute(arguments: [name])
            ref = db.lastInsertedRowID
        }
        cache.fieldRefs[key] = ref
        if SummaryRow.isListed(key) { cache.listedFieldRefs?[ref] = key }
        return ref
    }

    func replicaName(_ ref: Int64) throws -> ReplicaID {
        if let name = cache.replicaNames[ref] { return name }
        guard
            let text = try String.fetchOne(
                db.cachedStatement(sql: "SELECT name FROM replica WHERE id = ?"), arguments: [ref])
        else { throw StoreError(code: .corrupt, message: "version vector names unknown replica \(ref)") }
        let name = try ReplicaID(text)
        cache.replicaNames[ref] = name
        cache.replicaRefs[name] = ref
        return name
    }

    private func decodeVersion(_ data: Data) throws -> VersionVector {
        try decodeVersion([UInt8](data))
    }

    private func decodeVersion(_ bytes: [UInt8]) throws -> VersionVector {
        var reader = BinaryReader(bytes)
        var vector = VersionVector()
        while !reader.isAtEnd {
            let ref = Int64(bitPattern: try reader.readVarint())
            vector[try replicaName(ref)] = try reader.readVarint()
        }
        return vector
    }

    private func encodeVersion(_ vector: VersionVector) throws -> [UInt8] {
        var pairs: [(Int64, UInt64)] = []
        for (origin, seq) in vector.entries { pairs.append((try replicaRef(origin), seq)) }
        pairs.sort { $0.0 < $1.0 }
        var writer = BinaryWriter(capacity: pairs.count * 6)
        for (ref, seq) in pairs {
            writer.writeVarint(UInt64(bitPattern: ref))
            writer.writeVarint(seq)
        }
        return writer.bytes
    }

    func version(ofCase caseRef: Int64) throws -> VersionVector {
        if let cached = cache.versions[caseRef] { return cached }
        let select = try db.cachedStatement(sql: "SELECT version FROM caseRecord WHERE id = ?")
        let vector = try decodeVersion(try Data.fetchOne(select, arguments: [caseRef]) ?? Data())
        cache.versions[caseRef] = vector
        return vector
    }

    // MARK: Local writes

    /// Makes and applies a local change with the next sequence number and timestamp.
    func commitLocal(caseID: CaseID, origin: ReplicaID, ops: [FieldOperation], isNewCase: Bool) throws -> Change {
        try CaseStore.refuseWhileRestoring(db)
        guard let caseRef = try caseRef(caseID, create: isNewCase) else {
            throw StoreError(code: .caseNotFound, message: "no case \(caseID) on this replica")
        }
        if let tombstone = try tombstone(caseRef) {
            // A case this node held without ever writing to it, started again by this
            // node (an access log it now writes its first entry to): it holds nothing of
            // the old one, so its first change starts afresh; peers send the history
            // when the change makes this institution a participant.
            guard isNewCase, tombstone.version[origin] == 0 else {
                throw StoreError(code: .caseNotFound, message: "case \(caseID) was purged from this replica")
            }
            try db.execute(sql: "DELETE FROM caseTombstone WHERE caseRef = ?", arguments: [caseRef])
            cache.versions[caseRef] = VersionVector()
        }
        // A timestamp far ahead of this node's own clock (its clock was set ahead,
        // then fixed) would be refused by every peer: say so instead of writing it.
        if clock.latest.physical > wallMillis &+ clock.maximumDriftMillis {
            let hours = Double(clock.latest.physical - wallMillis) / 3_600_000
            throw StoreError(
                code: .invalidWrite,
                message: "this node's last timestamp is \(String(format: "%.1f", hours)) hours ahead of its clock "
                    + "(the clock was set ahead earlier): its changes would be refused by every peer until then; "
                    + "check the system clock")
        }
        let context = try version(ofCase: caseRef)
        let change = Change(
            caseID: caseID, origin: origin, seq: context[origin] + 1, hlc: clock.tick(wallMillis: wallMillis),
            context: context, ops: ops)
        try change.validateStructure()
        for op in change.ops { try schema.validateLocal(op) }
        // The rule every receiver applies, so a change this node writes is not one
        // its peers would quarantine.
        if checksRoles, let refusal = try roleRefusal(change, caseRef: caseRef) {
            throw StoreError(code: .invalidWrite, message: refusal)
        }
        try apply(change, body: change.encoded(), caseRef: caseRef)
        return change
    }

    // MARK: Purged cases

    /// The tombstone of a purged case, if it is one.
    func tombstone(_ caseRef: Int64) throws -> (version: VersionVector, gate: [FieldKey: FieldState])? {
        guard
            let row = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT version, gateFields FROM caseTombstone WHERE caseRef = ?"),
                arguments: [caseRef])
        else { return nil }
        var reader = BinaryReader([UInt8](row[1] as Data))
        var gate: [FieldKey: FieldState] = [:]
        for _ in 0..<(try reader.readCount(limit: 1_000_000, "gate fields")) {
            let key = try FieldKey(parsing: try reader.readString())
            gate[key] = try FieldState(decoding: try reader.readBlob())
        }
        return (try decodeVersion(row[0] as Data), gate)
    }

    /// Screens a batch for changes of cases purged here: drops them, unless the
    /// changes this node had not seen before the purge bring `institution` back
    /// (``Entitlement`` on the tombstone's gate fields with those changes merged in),
    /// in which case the tombstone goes and the whole batch of the case applies.
    ///
    /// - Returns: the indices of `changes` to drop.
    func screenPurged(_ changes: [Change], institution: InstitutionID, report: inout ApplyReport) throws -> Set<Int> {
        // Most stores have purged nothing: one cheap query, not one per case.
        guard try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM caseTombstone)")) == true else {
            return []
        }
        var byCase: [CaseID: [Int]] = [:]
        for (index, change) in changes.enumerated() { byCase[change.caseID, default: []].append(index) }
        var dropped: Set<Int> = []
        for (caseID, indices) in byCase {
            guard let caseRef = try caseRef(caseID, create: false), var tombstone = try tombstone(caseRef) else {
                continue
            }
            let unseen = indices.map { changes[$0] }.filter { !tombstone.version.contains($0.dot) }
            for change in unseen.sorted(by: Change.causalOrder) {
                for (index, op) in change.ops.enumerated() where Entitlement.isGate(op.field) {
                    var state = tombstone.gate[op.field] ?? .empty(for: op)
                    try state.apply(op, index: index, of: change, semantics: schema.setSemantics(for: op.field))
                    tombstone.gate[op.field] = state
                }
            }
            if Entitlement(of: institution, fields: tombstone.gate, schema: schema, nowMillis: wallMillis).receivesCase
            {
                try db.execute(sql: "DELETE FROM caseTombstone WHERE caseRef = ?", arguments: [caseRef])
                report.restored.append(caseID)
            } else {
                dropped.formUnion(indices)
                report.droppedPurged += indices.count
                // A change this node never held, dropped because its institution left
                // the case, must not count as delivered to it: its sender (unaware of
                // the departure, perhaps departed too and about to purge) would take
                // it for safe here and could lose the only copy. The pull cursor stays
                // before it until the sender learns, or hands it to a node that keeps it.
                report.heldBack += unseen.count
            }
        }
        return dropped
    }

    // MARK: Who may write

    /// The changes that added each institution to a case's participants.
    private func grants(_ caseRef: Int64) throws -> [String: [Dot]] {
        if let known = cache.grants[caseRef] { return known }
        var found: [String: [Dot]] = [:]
        for row in try Row.fetchAll(
            db.cachedStatement(sql: "SELECT institution, originRef, seq FROM participantGrant WHERE caseRef = ?"),
            arguments: [caseRef])
        {
            found[row[0], default: []].append(Dot(origin: try replicaName(row[1]), seq: UInt64(row[2] as Int64)))
        }
        cache.grants[caseRef] = found
        return found
    }

    /// Why a received change may not be applied, or `nil` when its origin may write
    /// it: the origin's institution had been added to the case's participants in
    /// what the change had seen, or the change opens the case naming it, or the case
    /// is the access log of a case the institution took part in.
    func writerRefusal(_ change: Change, caseRef: Int64?) throws -> String? {
        // Roles only one institution may give or take, whoever else may write.
        if let refusal = try roleRefusal(change, caseRef: caseRef) { return refusal }
        // An origin accepted once in a case is accepted for its later changes there:
        // each has seen everything the earlier one had (the common case, one lookup).
        let writer = StoreCache.StateKey(caseRef: caseRef ?? 0, fieldRef: try replicaRef(change.origin))
        if caseRef != nil, cache.acceptedWriters.contains(writer) { return nil }
        let institution = institutionName(change.origin)
        if let caseRef, let added = try grants(caseRef)[institution], added.contains(where: change.context.contains) {
            cache.acceptedWriters.insert(writer)
            return nil
        }
        if change.seq == 1, change.context.sortedEntries.isEmpty,
            change.ops.contains(.insert(Entitlement.participants, institution))
        {
            return nil
        }
        if let original = try companionOriginal(change.caseID), try grants(original)[institution] != nil {
            return nil
        }
        return "\(change.origin.institution) is not a participant of the case"
    }

    /// An origin's institution ID, computed once per origin and session.
    private func institutionName(_ origin: ReplicaID) -> String {
        if let known = institutionNames[origin] { return known }
        let name = origin.institution.rawValue
        institutionNames[origin] = name
        return name
    }

    /// The case whose access log `caseID` is, among the cases held.
    func companionOriginal(_ caseID: CaseID) throws -> Int64? {
        if cache.companions == nil {
            var map: [CaseID: Int64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, caseKey FROM caseRecord") {
                map[CaseStore.accessLogCase(of: try CaseID(row[1] as String))] = row[0]
            }
            cache.companions = map
        }
        if let known = cache.companions?[caseID] { return known }
        return nil
    }

    /// Refuses a change whose origin may not write it: reported and quarantined.
    private func refuseWriter(_ change: Change, body: [UInt8], reason: String, report: inout ApplyReport) throws {
        try quarantine(change, body: body, reason: reason, report: &report)
    }

    /// Keeps a refused change aside, one entry per change (case, origin, seq): a
    /// change refused again refreshes its entry (the latest reason and sender, one
    /// more attempt), and an entry whose change is already held is resolved at once.
    func quarantine(_ change: Change, body: [UInt8], reason: String, report: inout ApplyReport) throws {
        // Bounded: a peer that keeps sending refused changes cannot fill the disk.
        // Past the bounds an entry keeps no body (a retry then needs the change
        // again), and past the row bound it is only reported.
        if quarantineUsage == nil {
            let row = try Row.fetchOne(
                db, sql: "SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM quarantine WHERE resolvedAt IS NULL")
            quarantineUsage = (row?[0] ?? 0, row?[1] ?? 0)
        }
        guard quarantineUsage!.rows < CaseStore.maximumQuarantineRows else {
            report.rejected.append(
                .init(caseID: change.caseID, dot: change.dot, reason: "refused (quarantine full): \(reason)"))
            return
        }
        // Only a change that may apply later (its signer not verified yet, for
        // `quarantine retry`) keeps its body: a forged, unsealed or refused change
        // is recorded without the household's data it carries (its genuine copy
        // brings its own).
        let retryable = reason.hasPrefix(Self.unverifiedSigner)
        let keepsBody = retryable && quarantineUsage!.bytes + Int64(body.count) <= CaseStore.maximumQuarantineBytes
        quarantineUsage!.rows += 1
        if keepsBody { quarantineUsage!.bytes += Int64(body.count) }
        let body = keepsBody ? body : []
        let caseRef = try caseRef(change.caseID, create: false)
        let held = try caseRef.map { try version(ofCase: $0).contains(change.dot) } ?? false
        try db.cachedStatement(
            sql: """
                INSERT INTO quarantine (caseKey, origin, seq, sender, reason, receivedAt, body, resolvedAt)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (caseKey, origin, seq) DO UPDATE SET sender = excluded.sender, reason = excluded.reason,
                receivedAt = excluded.receivedAt, body = excluded.body, resolvedAt = excluded.resolvedAt,
                attempts = quarantine.attempts + 1
                """
        ).execute(arguments: [
            change.caseID.rawValue, change.origin.rawValue, Int64(clamping: change.seq), sender?.rawValue ?? "",
            reason, Int64(clamping: wallMillis), Data(body), held ? Int64(clamping: wallMillis) : nil,
        ])
        cache.openQuarantine = nil
        report.rejected.append(.init(caseID: change.caseID, dot: change.dot, reason: "quarantined: \(reason)"))
    }

    /// Marks the quarantine entry of a change resolved: the genuine change applied.
    /// One cheap check per session when nothing is quarantined (the common case).
    private func resolveQuarantine(of change: Change) throws {
        if cache.openQuarantine == nil {
            cache.openQuarantine =
                try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM quarantine WHERE resolvedAt IS NULL)") ?? false
        }
        guard cache.openQuarantine == true else { return }
        try db.cachedStatement(
            sql: """
                UPDATE quarantine SET resolvedAt = ? WHERE caseKey = ? AND origin = ? AND seq = ? AND resolvedAt IS NULL
                """
        ).execute(arguments: [
            Int64(clamping: wallMillis), change.caseID.rawValue, change.origin.rawValue, Int64(clamping: change.seq),
        ])
    }

    // MARK: Changes from a newer schema

    /// The indices of a change's operations on fields this node's schema lacks: the
    /// change was written under a newer schema. They wait in `heldChange` until this
    /// node upgrades; the rest of the change merges now, and the whole change goes
    /// into the log, so peers (upgraded or not) receive it from here.
    func heldOperations(of change: Change) -> [Int] {
        change.ops.indices.filter { !change.ops[$0].isWithheld && !schema.knows(change.ops[$0].field) }
    }

    /// Why a change with operations to hold cannot be held now (the held area is
    /// full: a node far behind its consortium's schema must upgrade), or nil.
    private func heldAreaRefusal(_ change: Change, body: [UInt8]) throws -> String? {
        let newer = heldOperations(of: change)
        guard !newer.isEmpty else { return nil }
        if heldUsage == nil {
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM heldChange")
            heldUsage = (row?[0] ?? 0, row?[1] ?? 0)
        }
        guard
            heldUsage!.rows >= CaseStore.maximumHeldRows
                || heldUsage!.bytes + Int64(body.count) > CaseStore.maximumHeldBytes
        else { return nil }
        return "change \(change.caseID) \(change.dot) writes \(change.ops[newer[0]].field), which case schema "
            + "\(schema.version) of this node does not have, and \(heldUsage!.rows) changes already wait for this node "
            + "to upgrade: upgrade it (casemesh schema install, or a newer casemesh)"
    }

    /// Merges the held operations of one change now that the schema has their
    /// fields (``CaseStore`` runs this at an upgrade, in the order they were held).
    ///
    /// - Returns: the indices still held (fields even this schema lacks).
    func mergeHeld(_ change: Change, operations: [Int]) throws -> [Int] {
        guard let caseRef = try caseRef(change.caseID, create: false) else { return [] }
        let valid = operations.filter { change.ops.indices.contains($0) }
        let now = Set(valid.filter { schema.knows(change.ops[$0].field) })
        if !now.isEmpty {
            for index in now { try schema.validate(change.ops[index]) }
            try merge(change, caseRef: caseRef, only: now)
            touchedCases.insert(caseRef)
        }
        return valid.filter { !now.contains($0) }
    }

    // MARK: Received changes

    /// Receives one change: validates it, applies it when its dependencies are
    /// present, holds it as pending otherwise.
    func receive(
        _ change: Change, body: [UInt8], sealRef: Int64 = 0, leaf: Int = 0, report: inout ApplyReport
    ) throws {
        do {
            try change.validateStructure()
            // Operations on fields this schema lacks come from a newer one: held, below.
            try schema.validate(change, allowingNewerFields: true)
        } catch let error as CRDTError {
            report.rejected.append(.init(caseID: change.caseID, dot: change.dot, reason: error.message))
            return
        } catch let error as ModelError {
            report.rejected.append(.init(caseID: change.caseID, dot: change.dot, reason: error.message))
            return
        }
        do {
            try clock.validate(change.hlc, wallMillis: wallMillis)
        } catch {
            // Refused for now, not for good: once the clocks agree (the sender's is
            // fixed, or time catches up) the same change is acceptable, so it must be
            // fetched again (the pull cursor does not move past it).
            report.heldBack += 1
            report.rejected.append(.init(caseID: change.caseID, dot: change.dot, reason: error.message))
            return
        }
        if let reason = try heldAreaRefusal(change, body: body) {
            // Refused for now, like a fast clock: fetched again once this node upgrades.
            report.heldBack += 1
            report.rejected.append(.init(caseID: change.caseID, dot: change.dot, reason: reason))
            return
        }
        // A case is created only by a change that can apply now, so changes waiting
        // for their dependencies never leave an empty case behind.
        let existing = try caseRef(change.caseID, create: false)
        let held = try existing.map { try version(ofCase: $0) } ?? VersionVector()
        if held.contains(change.dot) {
            report.duplicates += 1
            return
        }
        let ready = held[change.origin] == change.seq - 1 && held.includes(change.context)
        if !ready, let institution = receiver?.institution, Entitlement.removes(institution, in: change) {
            // The change that ended this institution's right to the case, without what
            // it had seen: acted on without merging (CaseStore+Purge.swift).
            let notice = CaseStore.isDepartureNotice(change, for: institution)
            let heldHere = try existing.map { try tombstone($0) == nil } ?? false
            if !heldHere {
                // Nothing of the case is held here: nothing to purge, nothing to keep.
                if notice {
                    report.departures += 1
                    return
                }
            } else if try writerRefusal(change, caseRef: existing) == nil {
                try db.cachedStatement(
                    sql: "INSERT OR IGNORE INTO departureNotice (caseKey, origin, seq, body) VALUES (?, ?, ?, ?)"
                ).execute(arguments: [change.caseID.rawValue, change.origin.rawValue, Int64(change.seq), Data(body)])
                report.departures += 1
                // Withheld operations: it can never be merged, so it waits nowhere else;
                // a whole change waits for its history too, and applies if that comes.
                if change.ops.contains(where: \.isWithheld) { return }
            }
        }
        guard ready else {
            try db.cachedStatement(
                sql: """
                    INSERT OR IGNORE INTO pendingChange (caseKey, origin, seq, body, sealRef, leaf)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """
            )
            .execute(arguments: [
                change.caseID.rawValue, change.origin.rawValue, Int64(change.seq), Data(body), sealRef, leaf,
            ])
            deferredAny = true
            return
        }
        if let reason = try writerRefusal(change, caseRef: existing) {
            try refuseWriter(change, body: body, reason: reason, report: &report)
            return
        }
        guard let caseRef = try existing ?? caseRef(change.caseID, create: true) else { return }
        if try apply(change, body: body, caseRef: caseRef, sealRef: sealRef, leaf: leaf) {
            report.heldForNewerSchema += 1
        }
        report.applied += 1
        report.appliedOperations += change.ops.count
    }

    /// Applies pending changes of the touched cases that have become ready.
    func drainPending(report: inout ApplyReport) throws {
        if !deferredAny {
            let anyPending = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM pendingChange)") ?? false
            guard anyPending else { return }
        }
        let select = try db.cachedStatement(sql: "SELECT body, sealRef, leaf FROM pendingChange WHERE caseKey = ?")
        let delete = try db.cachedStatement(
            sql: "DELETE FROM pendingChange WHERE caseKey = ? AND origin = ? AND seq = ?")
        for caseRef in touchedCases.sorted() {
            guard
                let caseKey = try String.fetchOne(
                    db, sql: "SELECT caseKey FROM caseRecord WHERE id = ?", arguments: [caseRef])
            else { continue }
            let caseID = try CaseID(caseKey)
            var waiting: [(change: Change, body: [UInt8], sealRef: Int64, leaf: Int)] = []
            for row in try Row.fetchAll(select, arguments: [caseID.rawValue]) {
                let body = [UInt8](row[0] as Data)
                if let change = try? Change(decoding: body) { waiting.append((change, body, row[1], row[2])) }
            }
            guard !waiting.isEmpty else { continue }
            waiting.sort { Change.causalOrder($0.change, $1.change) }
            var progressed = true
            while progressed {
                progressed = false
                let held = try version(ofCase: caseRef)
                guard
                    let index = waiting.firstIndex(where: { item in
                        held.contains(item.change.dot)
                            || (held[item.change.origin] == item.change.seq - 1 && held.includes(item.change.context))
                    })
                else { break }
                let (change, body, sealRef, leaf) = waiting.remove(at: index)
                if !held.contains(change.dot), let reason = try writerRefusal(change, caseRef: caseRef) {
                    try refuseWriter(change, body: body, reason: reason, report: &report)
                } else if !held.contains(change.dot) {
                    if try apply(change, body: body, caseRef: caseRef, sealRef: sealRef, leaf: leaf) {
                        report.heldForNewerSchema += 1
                    }
                    report.applied += 1
                    report.appliedOperations += change.ops.count
                }
                try delete.execute(arguments: [caseID.rawValue, change.origin.rawValue, Int64(change.seq)])
                progressed = true
            }
        }
        report.deferred = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM pendingChange") ?? 0
    }

    func state(_ key: StateKey) throws -> FieldState? {
        if let cached = cache.states[key] { return cached }
        guard let bytes = try selectState.bind(key.caseRef).bind(key.fieldRef).firstBlob() else { return nil }
        let state = try FieldState(decoding: bytes, coder: SessionReplicaCoder(session: self))
        cache.states[key] = state
        return state
    }

    /// Applies a change whose dependencies are all held: appends it to the log and
    /// merges it into the cached state, all operations or none.
    ///
    /// - Returns: whether operations of it are held for a newer schema.
    @discardableResult
    private func apply(_ change: Change, body: [UInt8], caseRef: Int64, sealRef: Int64 = 0, leaf: Int = 0) throws
        -> Bool
    {
        try merge(change, caseRef: caseRef)
        let newer = heldOperations(of: change)
        if !newer.isEmpty {
            try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO heldChange (caseKey, origin, seq, body, operations) VALUES (?, ?, ?, ?, ?)"
            ).execute(arguments: [
                change.caseID.rawValue, change.origin.rawValue, Int64(clamping: change.seq), Data(body),
                newer.map(String.init).joined(separator: ","),
            ])
            if db.changesCount > 0, heldUsage != nil {
                heldUsage!.rows += 1
                heldUsage!.bytes += Int64(body.count)
            }
        }
        for case .insert(let field, let institution) in change.ops where field == Entitlement.participants {
            try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO participantGrant (caseRef, institution, originRef, seq) VALUES (?, ?, ?, ?)"
            ).execute(arguments: [caseRef, institution, try replicaRef(change.origin), Int64(change.seq)])
            if cache.grants[caseRef] != nil { cache.grants[caseRef]![institution, default: []].append(change.dot) }
        }
        try recordRoleGrants(change, caseRef: caseRef)
        try resolveQuarantine(of: change)
        try segment.append(
            caseRef: caseRef, replicaRef: try replicaRef(change.origin), canonical: body, sealRef: sealRef, leaf: leaf)
        if segment.isFull { try writeSegment() }
        touchedCases.insert(caseRef)
        if change.hlc > clock.latest {
            try clock.observe(change.hlc, wallMillis: max(wallMillis, change.hlc.physical))
        }
        return !newer.isEmpty
    }

    /// Merges a change into the cached field states and version vector.
    ///
    /// Every operation is checked against its field's state before any is applied,
    /// so the in-place updates below cannot stop halfway.
    ///
    /// Operations on fields this node's schema lacks are skipped (held, see
    /// ``heldOperations(of:)``); with `only`, just the operations at those indices merge.
    private func merge(_ change: Change, caseRef: Int64, only: Set<Int>? = nil) throws {
        var keys: [StateKey?] = []
        keys.reserveCapacity(change.ops.count)
        for (index, op) in change.ops.enumerated() {
            // A withheld operation changes nothing here (not even an empty state).
            guard !op.isWithheld, schema.knows(op.field), only?.contains(index) ?? true else {
                keys.append(nil)
                continue
            }
            let key = StateKey(caseRef: caseRef, fieldRef: try fieldRef(op.field))
            if cache.states[key] == nil { cache.states[key] = try state(key) ?? .empty(for: op) }
            guard cache.states[key]?.accepts(op) == true else {
                throw StoreError(
                    code: .corrupt,
                    message: "change \(change.caseID) \(change.dot) does not fit stored field \(op.field)")
            }
            keys.append(key)
        }
        for (index, op) in change.ops.enumerated() {
            guard let key = keys[index] else { continue }
            let semantics: SetSemantics
            switch op {
            case .insert, .remove: semantics = schema.setSemantics(for: op.field)
            default: semantics = .addWins
            }
            try cache.states[key]!.apply(op, index: index, of: change, semantics: semantics)
            cache.dirtyStates.insert(key)
            if SummaryRow.isListed(op.field) { cache.listingDirtyCases.insert(caseRef) }
        }
        if cache.versions[caseRef] == nil { _ = try version(ofCase: caseRef) }
        // Held operations merge after later changes of their origin: the version
        // vector has held the change since it first applied.
        if only == nil { cache.versions[caseRef]![change.origin] = change.seq }
        cache.dirtyCases.insert(caseRef)
    }

    /// Appends the changes gathered so far to the change log as one row.
    private func writeSegment() throws {
        guard !segment.isEmpty else { return }
        try db.cachedStatement(sql: "INSERT INTO changeSegment (firstArrival, changeCount, body) VALUES (?, ?, ?)")
            .execute(arguments: [nextArrival, segment.count, Data(segment.writer.bytes)])
        nextArrival += Int64(segment.count)
        segment.reset()
    }

    /// Ends the transaction's work: appends the rest of the log segment and saves
    /// the clock; at a checkpoint (or when the changed state outgrows the cache's
    /// bound) also writes every changed field state and version vector and moves
    /// the checkpoint to the end of the log.
    func flush(checkpoint: Bool) throws {
        try writeSegment()
        try db.execute(
            sql: "UPDATE replicaInfo SET clockPhysical = ?, clockLogical = ? WHERE singleton = 1",
            arguments: [Int64(clock.latest.physical), Int64(clock.latest.logical)])
        guard checkpoint || cache.dirtyStates.count > cache.dirtyCapacity else { return }
        let coder = SessionReplicaCoder(session: self)
        // Listing lines say whether this node's institution may see each case.
        guard let receiver else {
            throw StoreError(code: .corrupt, message: "an apply session ran without its receiving replica")
        }
        let visibility = SummaryRow.Visibility(
            institution: receiver.institution, schema: schema, nowMillis: wallMillis)
        // In key order: consecutive writes land on the same B-tree pages.
        for key in cache.dirtyStates.sorted(by: { ($0.caseRef, $0.fieldRef) < ($1.caseRef, $1.fieldRef) }) {
            guard let state = cache.states[key] else {
                throw StoreError(code: .corrupt, message: "a changed field state went missing from the cache")
            }
            try upsertState.bind(key.caseRef).bind(key.fieldRef).bind(state.isConflict ? 1 : 0)
                .bind(state.encoded(coder: coder)).run()
        }
        for caseRef in cache.dirtyCases.sorted() {
            let version = try version(ofCase: caseRef)
            try updateVersion.bind(try encodeVersion(version)).bind(caseRef).run()
            // Only the count and the conflicts can have changed when no listed field did.
            if !cache.listingDirtyCases.contains(caseRef) {
                try db.cachedStatement(
                    sql: """
                        UPDATE caseSummary SET changeCount = ?1,
                        conflicts = (SELECT COUNT(*) FROM fieldState WHERE caseRef = ?2 AND conflicted = 1)
                        WHERE caseRef = ?2
                        """
                ).execute(arguments: [Int64(clamping: version.totalCount), caseRef])
                if db.changesCount > 0 { continue }
            }
            if cache.listedFieldRefs == nil { cache.listedFieldRefs = try SummaryRow.listedFieldRefs(db) }
            let cache = cache
            try SummaryRow.refresh(
                db, caseRef: caseRef, caseKey: try caseKey(ofRef: caseRef), changeCount: version.totalCount,
                coder: coder, visibility: visibility, listed: cache.listedFieldRefs ?? [:],
                decoded: { cache.states[StateKey(caseRef: caseRef, fieldRef: $0)] })
        }
        try db.execute(
            sql: "UPDATE replicaInfo SET checkpointArrival = ? WHERE singleton = 1", arguments: [nextArrival])
        cache.dirtyStates.removeAll()
        cache.dirtyCases.removeAll()
        cache.listingDirtyCases.removeAll()
    }
}

/// Writes replica IDs in stored field states as their interned `replica.id`.
struct SessionReplicaCoder: ReplicaCoder {
    let session: ApplySession

    func write(_ replica: ReplicaID, into writer: inout BinaryWriter) throws(CRDTError) {
        do {
            writer.writeVarint(UInt64(bitPattern: try session.replicaRef(replica)))
        } catch {
            throw CRDTError(code: .malformedEncoding, message: "cannot intern replica \(replica): \(error)")
        }
    }

    func read(from reader: inout BinaryReader) throws(CRDTError) -> ReplicaID {
        let ref = Int64(bitPattern: try reader.readVarint())
        do {
            return try session.replicaName(ref)
        } catch {
            throw CRDTError(code: .malformedEncoding, message: "stored state names unknown replica \(ref)")
        }
    }
}

/// Reads replica IDs in stored field states from a loaded copy of the replica table.
struct ReplicaTableCoder: ReplicaCoder {
    let names: [Int64: ReplicaID]

    init(_ db: Database) throws {
        var names: [Int64: ReplicaID] = [:]
        for row in try Row.fetchAll(db.cachedStatement(sql: "SELECT id, name FROM replica")) {
            names[row[0]] = try ReplicaID(row[1] as String)
        }
        self.names = names
    }

    func write(_ replica: ReplicaID, into writer: inout BinaryWriter) throws(CRDTError) {
        guard let ref = names.first(where: { $0.value == replica })?.key else {
            throw CRDTError(code: .malformedEncoding, message: "replica \(replica) is not interned")
        }
        writer.writeVarint(UInt64(bitPattern: ref))
    }

    func read(from reader: inout BinaryReader) throws(CRDTError) -> ReplicaID {
        let ref = Int64(bitPattern: try reader.readVarint())
        guard let name = names[ref] else {
            throw CRDTError(code: .malformedEncoding, message: "stored state names unknown replica \(ref)")
        }
        return name
    }
}
