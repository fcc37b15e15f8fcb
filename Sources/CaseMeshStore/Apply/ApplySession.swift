import CaseMeshCRDT
import CaseMeshModel
import Foundation
import GRDB

/// Applies changes inside one write transaction: the hot path.
///
/// Decoded field states, version vectors and interned IDs come from the
/// ``StoreCache``; a batch's writes to the same field collapse into one state write,
/// the change log is appended in arrival order, and every statement is a cached
/// prepared statement.
///
/// - Important: A session lives inside one `DatabaseWriter.write` closure, under the
///   cache's lock, and ``flush()`` must run before the closure returns.
final class ApplySession {
    typealias StateKey = StoreCache.StateKey

    private let db: Database
    private let schema: CaseSchema
    private let wallMillis: UInt64
    private let cache: StoreCache
    private(set) var clock: HybridLogicalClock
    /// Dirty field states, with whether each was a conflict when the batch began.
    private var dirtyStates: [StateKey: Bool] = [:]
    private var dirtyCases: Set<Int64> = []
    private var touchedCases: Set<CaseID> = []
    private var deferredAny = false

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
        return ref
    }

    func replicaRef(_ replica: ReplicaID) throws -> Int64 {
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

    private func replicaName(_ ref: Int64) throws -> ReplicaID {
        if let name = cache.replicaNames[ref] { return name }
        guard let text = try String.fetchOne(db.cachedStatement(sql: "SELECT name FROM replica WHERE id = ?"), arguments: [ref])
        else { throw StoreError(code: .corrupt, message: "version vector names unknown replica \(ref)") }
        let name = try ReplicaID(text)
        cache.replicaNames[ref] = name
        cache.replicaRefs[name] = ref
        return name
    }

    private func decodeVersion(_ data: Data) throws -> VersionVector {
        var reader = BinaryReader([UInt8](data))
        var vector = VersionVector()
        while !reader.isAtEnd {
            let ref = Int64(bitPattern: try reader.readVarint())
            vector[try replicaName(ref)] = try reader.readVarint()
        }
        return vector
    }

    private func encodeVersion(_ vector: VersionVector) throws -> Data {
        var pairs: [(Int64, UInt64)] = []
        for (origin, seq) in vector.entries { pairs.append((try replicaRef(origin), seq)) }
        pairs.sort { $0.0 < $1.0 }
        var writer = BinaryWriter(capacity: pairs.count * 6)
        for (ref, seq) in pairs {
            writer.writeVarint(UInt64(bitPattern: ref))
            writer.writeVarint(seq)
        }
        return Data(writer.bytes)
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
        guard let caseRef = try caseRef(change.caseID, create: true) else { return }
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
        let select = try db.cachedStatement(sql: "SELECT body FROM pendingChange WHERE caseKey = ?")
        let delete = try db.cachedStatement(sql: "DELETE FROM pendingChange WHERE caseKey = ? AND origin = ? AND seq = ?")
        for caseID in touchedCases.sorted() {
            var waiting: [(change: Change, body: [UInt8])] = []
            for data in try Data.fetchAll(select, arguments: [caseID.rawValue]) {
                let body = [UInt8](data)
                if let change = try? Change(decoding: body) { waiting.append((change, body)) }
            }
            guard !waiting.isEmpty, let caseRef = try caseRef(caseID, create: false) else { continue }
            waiting.sort { Change.causalOrder($0.change, $1.change) }
            var progressed = true
            while progressed {
                progressed = false
                let held = try version(ofCase: caseRef)
                guard let index = waiting.firstIndex(where: { item in
                    held.contains(item.change.dot)
                        || (held[item.change.origin] == item.change.seq - 1 && held.includes(item.change.context))
                }) else { break }
                let (change, body) = waiting.remove(at: index)
                if !held.contains(change.dot) {
                    try apply(change, body: body, caseRef: caseRef)
                    report.applied += 1
                    report.appliedOperations += change.ops.count
                }
                try delete.execute(arguments: [caseID.rawValue, change.origin.rawValue, Int64(change.seq)])
                progressed = true
            }
        }
        report.deferred = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM pendingChange") ?? 0
    }

    private func state(_ key: StateKey) throws -> FieldState? {
        if let cached = cache.states[key] { return cached }
        let select = try db.cachedStatement(sql: "SELECT state FROM fieldState WHERE caseRef = ? AND field = ?")
        guard let data = try Data.fetchOne(select, arguments: [key.caseRef, key.field]) else { return nil }
        let state = try FieldState(decoding: [UInt8](data))
        cache.states[key] = state
        return state
    }

    private static func isConflict(_ state: FieldState?) -> Bool {
        if case .register(let register)? = state { return register.isConflict }
        return false
    }

    /// Applies a change whose dependencies are all held: all operations or none.
    private func apply(_ change: Change, body: [UInt8], caseRef: Int64) throws {
        var updated: [(key: StateKey, state: FieldState)] = []
        for (index, op) in change.ops.enumerated() {
            let key = StateKey(caseRef: caseRef, field: op.field.storageKey)
            let position = updated.firstIndex { $0.key == key }
            var state: FieldState
            if let position {
                state = updated[position].state
            } else {
                let current = try self.state(key)
                if dirtyStates[key] == nil { dirtyStates[key] = Self.isConflict(current) }
                state = current ?? .empty(for: op)
            }
            try state.apply(op, index: index, of: change, semantics: schema.setSemantics(for: op.field))
            if let position { updated[position].state = state } else { updated.append((key, state)) }
        }
        let replicaRef = try replicaRef(change.origin)
        try db.cachedStatement(
            sql: "INSERT INTO change (caseRef, replicaRef, seq, hlcPhysical, hlcLogical, body) VALUES (?, ?, ?, ?, ?, ?)"
        ).execute(arguments: [
            caseRef, replicaRef, Int64(change.seq), Int64(change.hlc.physical), Int64(change.hlc.logical), Data(body),
        ])
        for (key, state) in updated { cache.states[key] = state }
        var vector = try version(ofCase: caseRef)
        vector[change.origin] = change.seq
        cache.versions[caseRef] = vector
        dirtyCases.insert(caseRef)
        if change.hlc > clock.latest {
            try clock.observe(change.hlc, wallMillis: max(wallMillis, change.hlc.physical))
        }
    }

    /// Writes every changed field state, conflict marker, version vector and the clock.
    func flush() throws {
        let upsertState = try db.cachedStatement(
            sql: "INSERT INTO fieldState (caseRef, field, state) VALUES (?, ?, ?) "
                + "ON CONFLICT (caseRef, field) DO UPDATE SET state = excluded.state")
        let insertConflict = try db.cachedStatement(sql: "INSERT OR IGNORE INTO conflict (caseRef, field) VALUES (?, ?)")
        let deleteConflict = try db.cachedStatement(sql: "DELETE FROM conflict WHERE caseRef = ? AND field = ?")
        for (key, wasConflict) in dirtyStates {
            guard let state = cache.states[key] else { continue }
            try upsertState.execute(arguments: [key.caseRef, key.field, Data(state.encoded())])
            let isConflict = Self.isConflict(state)
            if isConflict && !wasConflict {
                try insertConflict.execute(arguments: [key.caseRef, key.field])
            } else if !isConflict && wasConflict {
                try deleteConflict.execute(arguments: [key.caseRef, key.field])
            }
        }
        dirtyStates.removeAll()
        let updateVersion = try db.cachedStatement(sql: "UPDATE caseRecord SET version = ? WHERE id = ?")
        for caseRef in dirtyCases {
            try updateVersion.execute(arguments: [try encodeVersion(version(ofCase: caseRef)), caseRef])
        }
        dirtyCases.removeAll()
        try db.execute(
            sql: "UPDATE replicaInfo SET clockPhysical = ?, clockLogical = ? WHERE singleton = 1",
            arguments: [Int64(clock.latest.physical), Int64(clock.latest.logical)])
    }
}
