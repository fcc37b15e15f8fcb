import CaseMeshCRDT
import CaseMeshModel
import Foundation
import GRDB

/// Applies changes inside one write transaction: the hot path.
///
/// Field states, version vectors and interned IDs are cached for the whole
/// transaction, so several writes to the same field in a batch cost one state write,
/// and every statement is a cached prepared statement.
///
/// - Important: A session lives inside one `DatabaseWriter.write` closure and is never
///   shared; ``flush()`` must run before the closure returns.
final class ApplySession {
    private struct StateKey: Hashable {
        var caseRef: Int64
        var field: String
    }

    private struct VersionKey: Hashable {
        var caseRef: Int64
        var origin: ReplicaID
    }

    private struct CachedState {
        var state: FieldState
        var wasConflict: Bool
        var dirty: Bool
    }

    private let db: Database
    private let schema: CaseSchema
    private let wallMillis: UInt64
    private(set) var clock: HybridLogicalClock
    private var caseRefs: [CaseID: Int64] = [:]
    private var replicaRefs: [ReplicaID: Int64] = [:]
    private var versions: [Int64: VersionVector] = [:]
    private var dirtyVersions: Set<VersionKey> = []
    private var states: [StateKey: CachedState] = [:]
    private var touchedCases: Set<CaseID> = []
    private var deferredAny = false

    init(db: Database, schema: CaseSchema, wallMillis: UInt64, maximumDriftMillis: UInt64) throws {
        self.db = db
        self.schema = schema
        self.wallMillis = wallMillis
        let row = try Row.fetchOne(db, sql: "SELECT clockPhysical, clockLogical FROM replicaInfo WHERE singleton = 1")
        let physical: Int64 = row?["clockPhysical"] ?? 0
        let logical: Int64 = row?["clockLogical"] ?? 0
        clock = HybridLogicalClock(
            latest: HybridTimestamp(physical: UInt64(physical), logical: UInt32(logical)),
            maximumDriftMillis: maximumDriftMillis)
    }

    // MARK: Identifiers

    func caseRef(_ caseID: CaseID, create: Bool) throws -> Int64? {
        if let ref = caseRefs[caseID] { return ref }
        let select = try db.cachedStatement(sql: "SELECT id FROM caseRecord WHERE caseKey = ?")
        if let ref = try Int64.fetchOne(select, arguments: [caseID.rawValue]) {
            caseRefs[caseID] = ref
            return ref
        }
        guard create else { return nil }
        try db.cachedStatement(sql: "INSERT INTO caseRecord (caseKey) VALUES (?)").execute(arguments: [caseID.rawValue])
        let ref = db.lastInsertedRowID
        caseRefs[caseID] = ref
        versions[ref] = VersionVector()
        return ref
    }

    func replicaRef(_ replica: ReplicaID) throws -> Int64 {
        if let ref = replicaRefs[replica] { return ref }
        let select = try db.cachedStatement(sql: "SELECT id FROM replica WHERE name = ?")
        let ref: Int64
        if let existing = try Int64.fetchOne(select, arguments: [replica.rawValue]) {
            ref = existing
        } else {
            try db.cachedStatement(sql: "INSERT INTO replica (name) VALUES (?)").execute(arguments: [replica.rawValue])
            ref = db.lastInsertedRowID
        }
        replicaRefs[replica] = ref
        return ref
    }

    func version(ofCase caseRef: Int64) throws -> VersionVector {
        if let cached = versions[caseRef] { return cached }
        let select = try db.cachedStatement(
            sql: "SELECT replica.name, caseVersion.seq FROM caseVersion JOIN replica ON replica.id = caseVersion.replicaRef "
                + "WHERE caseVersion.caseRef = ?")
        var vector = VersionVector()
        let rows = try Row.fetchCursor(select, arguments: [caseRef])
        while let row = try rows.next() {
            vector[try ReplicaID(row[0] as String)] = UInt64(row[1] as Int64)
        }
        versions[caseRef] = vector
        return vector
    }

    // MARK: Local writes

    /// Makes and applies a local change with the next sequence number and timestamp.
    func commitLocal(caseID: CaseID, origin: ReplicaID, ops: [FieldOperation], isNewCase: Bool) throws -> Change {
        guard let caseRef = try caseRef(caseID, create: isNewCase) else {
            throw StoreError(code: .caseNotFound, message: "no case \(caseID) on this replica")
        }
        let context = try version(ofCase: caseRef)
        let change = Change(
            caseID: caseID, origin: origin, seq: context[origin] + 1, hlc: clock.tick(wallMillis: wallMillis),
            context: context, ops: ops)
        try change.validateStructure()
        try schema.validate(change)
        try apply(change, body: change.encoded(), caseRef: caseRef)
        return change
    }

    // MARK: Received changes

    /// Receives one change: validates it, applies it when its dependencies are
    /// present, holds it as pending otherwise.
    func receive(_ change: Change, body: [UInt8], report: inout ApplyReport) throws {
        do {
            try change.validateStructure()
            try schema.validate(change)
            try clock.validate(change.hlc, wallMillis: wallMillis)
        } catch let error as CRDTError {
            report.rejected.append(.init(caseID: change.caseID, dot: change.dot, reason: error.message))
            return
        } catch let error as ModelError {
            report.rejected.append(.init(caseID: change.caseID, dot: change.dot, reason: error.message))
            return
        }
        let caseRef = try caseRef(change.caseID, create: true)!
        let held = try version(ofCase: caseRef)
        if held.contains(change.dot) {
            report.duplicates += 1
            return
        }
        touchedCases.insert(change.caseID)
        guard held[change.origin] == change.seq - 1, held.includes(change.context) else {
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO pendingChange (caseKey, origin, seq, body) VALUES (?, ?, ?, ?)")
                .execute(arguments: [change.caseID.rawValue, change.origin.rawValue, Int64(change.seq), Data(body)])
            deferredAny = true
            return
        }
        try apply(change, body: body, caseRef: caseRef)
        report.applied += 1
        report.appliedOperations += change.ops.count
    }

    /// Applies pending changes of the touched cases that have become ready.
    func drainPending(report: inout ApplyReport) throws {
        if !deferredAny {
            let anyPending = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM pendingChange)") ?? false
            guard anyPending else { return }
        }
        let select = try db.cachedStatement(sql: "SELECT origin, seq, body FROM pendingChange WHERE caseKey = ?")
        let delete = try db.cachedStatement(sql: "DELETE FROM pendingChange WHERE caseKey = ? AND origin = ? AND seq = ?")
        for caseID in touchedCases.sorted() {
            var waiting: [(change: Change, body: [UInt8])] = []
            let rows = try Row.fetchCursor(select, arguments: [caseID.rawValue])
            while let row = try rows.next() {
                let body = [UInt8](row[2] as Data)
                if let change = try? Change(decoding: body) { waiting.append((change, body)) }
            }
            guard !waiting.isEmpty, let caseRef = try caseRef(caseID, create: false) else { continue }
            waiting.sort { Change.causalOrder($0.change, $1.change) }
            var progressed = true
            while progressed {
                progressed = false
                let held = try version(ofCase: caseRef)
                for (index, item) in waiting.enumerated().reversed() {
                    let change = item.change
                    let ready = held[change.origin] == change.seq - 1 && held.includes(change.context)
                    guard held.contains(change.dot) || ready else { continue }
                    if ready {
                        try apply(change, body: item.body, caseRef: caseRef)
                        report.applied += 1
                        report.appliedOperations += change.ops.count
                    }
                    try delete.execute(arguments: [caseID.rawValue, change.origin.rawValue, Int64(change.seq)])
                    waiting.remove(at: index)
                    progressed = true
                    break
                }
            }
        }
        report.deferred = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM pendingChange") ?? 0
    }

    private func loadState(_ key: StateKey) throws -> CachedState? {
        if let cached = states[key] { return cached }
        let select = try db.cachedStatement(sql: "SELECT state FROM fieldState WHERE caseRef = ? AND field = ?")
        guard let data = try Data.fetchOne(select, arguments: [key.caseRef, key.field]) else { return nil }
        let state = try FieldState(decoding: [UInt8](data))
        var wasConflict = false
        if case .register(let register) = state { wasConflict = register.isConflict }
        let cached = CachedState(state: state, wasConflict: wasConflict, dirty: false)
        states[key] = cached
        return cached
    }

    /// Applies a change whose dependencies are all held: all operations or none.
    private func apply(_ change: Change, body: [UInt8], caseRef: Int64) throws {
        var updated: [StateKey: CachedState] = [:]
        for (index, op) in change.ops.enumerated() {
            let key = StateKey(caseRef: caseRef, field: op.field.storageKey)
            var cached = try updated[key] ?? loadState(key)
                ?? CachedState(state: .empty(for: op), wasConflict: false, dirty: true)
            try cached.state.apply(op, index: index, of: change, semantics: schema.setSemantics(for: op.field))
            cached.dirty = true
            updated[key] = cached
        }
        let replicaRef = try replicaRef(change.origin)
        try db.cachedStatement(
            sql: "INSERT INTO change (caseRef, replicaRef, seq, hlcPhysical, hlcLogical, body) VALUES (?, ?, ?, ?, ?, ?)"
        ).execute(arguments: [
            caseRef, replicaRef, Int64(change.seq), Int64(change.hlc.physical), Int64(change.hlc.logical), Data(body),
        ])
        for (key, cached) in updated { states[key] = cached }
        var vector = try version(ofCase: caseRef)
        vector[change.origin] = change.seq
        versions[caseRef] = vector
        dirtyVersions.insert(VersionKey(caseRef: caseRef, origin: change.origin))
        if change.hlc > clock.latest {
            try clock.observe(change.hlc, wallMillis: max(wallMillis, change.hlc.physical))
        }
    }

    /// Writes every changed field state, conflict marker, version entry and the clock.
    func flush() throws {
        let upsertState = try db.cachedStatement(
            sql: "INSERT INTO fieldState (caseRef, field, state) VALUES (?, ?, ?) "
                + "ON CONFLICT (caseRef, field) DO UPDATE SET state = excluded.state")
        let insertConflict = try db.cachedStatement(sql: "INSERT OR IGNORE INTO conflict (caseRef, field) VALUES (?, ?)")
        let deleteConflict = try db.cachedStatement(sql: "DELETE FROM conflict WHERE caseRef = ? AND field = ?")
        for (key, cached) in states where cached.dirty {
            try upsertState.execute(arguments: [key.caseRef, key.field, Data(cached.state.encoded())])
            var isConflict = false
            if case .register(let register) = cached.state { isConflict = register.isConflict }
            if isConflict && !cached.wasConflict {
                try insertConflict.execute(arguments: [key.caseRef, key.field])
            } else if !isConflict && cached.wasConflict {
                try deleteConflict.execute(arguments: [key.caseRef, key.field])
            }
            states[key] = CachedState(state: cached.state, wasConflict: isConflict, dirty: false)
        }
        let upsertVersion = try db.cachedStatement(
            sql: "INSERT INTO caseVersion (caseRef, replicaRef, seq) VALUES (?, ?, ?) "
                + "ON CONFLICT (caseRef, replicaRef) DO UPDATE SET seq = excluded.seq")
        for key in dirtyVersions {
            let seq = versions[key.caseRef]?[key.origin] ?? 0
            try upsertVersion.execute(arguments: [key.caseRef, try replicaRef(key.origin), Int64(seq)])
        }
        dirtyVersions.removeAll()
        try db.execute(
            sql: "UPDATE replicaInfo SET clockPhysical = ?, clockLogical = ? WHERE singleton = 1",
            arguments: [Int64(clock.latest.physical), Int64(clock.latest.logical)])
    }
}
