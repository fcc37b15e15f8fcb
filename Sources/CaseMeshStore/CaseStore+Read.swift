public import CaseMeshCRDT
import CaseMeshModel
import Foundation
import GRDB

/// One case as this replica holds it.
public struct CaseSnapshot: Hashable, Sendable {
    public var caseID: CaseID
    public var version: VersionVector
    /// Merged state of every written field, by field.
    public var fields: [FieldKey: FieldState]

    public init(caseID: CaseID, version: VersionVector, fields: [FieldKey: FieldState]) {
        self.caseID = caseID
        self.version = version
        self.fields = fields
    }

    /// Fields whose registers hold concurrent values, sorted.
    public var conflicts: [FieldKey] {
        fields.compactMap { key, state in
            if case .register(let register) = state, register.isConflict { return key }
            return nil
        }.sorted()
    }
}

/// A short line about one case, for listings.
public struct CaseSummary: Hashable, Sendable {
    public var caseID: CaseID
    public var title: String?
    public var stage: String?
    public var riskLevel: String?
    public var participants: [String]
    public var openConflicts: Int
    public var changeCount: UInt64
    public var caseManager: String? = nil
    /// The statutory deadline the case must meet next (see `DeadlineRules.nextDue`),
    /// and the moment (ms) it is missed; overdue once that has passed.
    public var nextDeadline: String? = nil
    public var nextDeadlineEndMillis: UInt64? = nil
}

/// One open conflict: a register with concurrent values.
public struct ConflictSummary: Hashable, Sendable {
    public var caseID: CaseID
    public var field: FieldKey
    /// The concurrent writes, provisional winner first.
    public var siblings: [RegisterState.Sibling]

    public init(caseID: CaseID, field: FieldKey, siblings: [RegisterState.Sibling]) {
        self.caseID = caseID
        self.field = field
        self.siblings = siblings
    }
}

extension CaseStore {
    /// The case as held here.
    ///
    /// - Throws: ``StoreError`` `caseNotFound`.
    public func snapshot(of caseID: CaseID) throws(StoreError) -> CaseSnapshot {
        let schema = schema
        return try read { db in try Self.snapshot(db, caseID: caseID, tail: LogTail(db), schema: schema) }
    }

    /// Several cases as held here, read in one transaction with one pass over the
    /// log's tail (a page of a list costs one read, not one per row). A case not held
    /// (or purged) is left out.
    /// The cases held here where a register `field` of some instance of `entity`
    /// holds `value` (any sibling: a value in conflict counts), from the checkpointed
    /// states of that field alone and the log's tail: so "my tasks" reads the cases
    /// with a task for the account, not every case held.
    public func cases(whereAny entity: String, field: String, is value: String) throws(StoreError) -> [CaseID] {
        try read { db in
            let coder = try ReplicaTableCoder(db)
            var found: Set<String> = []
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT caseRecord.caseKey, fieldState.state FROM fieldState
                    JOIN fieldName ON fieldName.id = fieldState.fieldRef
                    JOIN caseRecord ON caseRecord.id = fieldState.caseRef
                    WHERE fieldName.name >= ? AND fieldName.name < ? AND fieldName.name LIKE ?
                    AND caseRecord.id NOT IN (SELECT caseRef FROM caseTombstone)
                    """, arguments: [entity + "#", entity + "$", "%." + field])
            while let row = try rows.next() {
                guard case .register(let register) = try FieldState(decoding: [UInt8](row[1] as Data), coder: coder)
                else { continue }
                if register.siblings.contains(where: { $0.value == .string(value) }) { found.insert(row[0]) }
            }
            // Written since the checkpoint: a case whose tail assigns the value is read
            // whole by the caller, which decides on the merged state.
            let tail = try LogTail(db)
            for entry in tail.entries {
                for case .assign(let key, .string(let written)) in entry.change.ops
                where key.entity == entity && key.field == field && written == value {
                    found.insert(entry.change.caseID.rawValue)
                }
            }
            return try found.sorted().map { try CaseID($0) }
        }
    }

    public func snapshots(of caseIDs: [CaseID]) throws(StoreError) -> [CaseID: CaseSnapshot] {
        let schema = schema
        return try read { db in
            let tail = try LogTail(db)
            let coder = try ReplicaTableCoder(db)
            var found: [CaseID: CaseSnapshot] = [:]
            for caseID in Set(caseIDs) {
                do {
                    found[caseID] = try Self.snapshot(db, caseID: caseID, tail: tail, schema: schema, coder: coder)
                } catch let error as StoreError where error.code == .caseNotFound {
                    continue
                }
            }
            return found
        }
    }

    /// The case as checkpointed, with the log's tail replayed on top.
    static func snapshot(
        _ db: Database, caseID: CaseID, tail: LogTail, schema: CaseSchema, coder given: ReplicaTableCoder? = nil
    ) throws -> CaseSnapshot {
        guard
            let record = try Row.fetchOne(
                db, sql: "SELECT id, version FROM caseRecord WHERE caseKey = ?", arguments: [caseID.rawValue])
        else { throw StoreError(code: .caseNotFound, message: "no case \(caseID) on this replica") }
        let caseRef: Int64 = record[0]
        if let reason = try String.fetchOne(
            db, sql: "SELECT reason FROM caseTombstone WHERE caseRef = ?", arguments: [caseRef])
        {
            throw StoreError(code: .caseNotFound, message: "case \(caseID) was purged from this replica: \(reason)")
        }
        let coder = try given ?? ReplicaTableCoder(db)
        var fields: [FieldKey: FieldState] = [:]
        for row in try Row.fetchAll(
            db.cachedStatement(
                sql:
                    "SELECT fieldName.name, state FROM fieldState JOIN fieldName ON fieldName.id = fieldRef WHERE caseRef = ?"
            ),
            arguments: [caseRef])
        {
            let key = try FieldKey(parsing: row[0] as String)
            fields[key] = try FieldState(decoding: [UInt8](row[1] as Data), coder: coder)
        }
        var version = VersionVector()
        var reader = BinaryReader([UInt8](record[1] as Data))
        while !reader.isAtEnd {
            let replica = try coder.read(from: &reader)
            version[replica] = try reader.readVarint()
        }
        try tail.replay(ofCase: caseRef, fields: &fields, version: &version, schema: schema)
        return CaseSnapshot(caseID: caseID, version: version, fields: fields)
    }

    /// Some fields of a case as held here (checkpointed state with the log's tail
    /// replayed), without reading the rest; nil when the case is not held or purged.
    static func fields(
        _ db: Database, of caseID: CaseID, named names: [String], tail: LogTail, schema: CaseSchema,
        coder: ReplicaTableCoder
    ) throws -> [FieldKey: FieldState]? {
        guard
            let caseRef = try Int64.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT id FROM caseRecord WHERE caseKey = ?
                        AND id NOT IN (SELECT caseRef FROM caseTombstone)
                        """),
                arguments: [caseID.rawValue])
        else { return nil }
        var fields: [FieldKey: FieldState] = [:]
        let list = names.map { "'\($0)'" }.joined(separator: ", ")
        for row in try Row.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT fieldName.name, state FROM fieldState JOIN fieldName ON fieldName.id = fieldRef
                    WHERE caseRef = ? AND fieldName.name IN (\(list))
                    """),
            arguments: [caseRef])
        {
            fields[try FieldKey(parsing: row[0] as String)] = try FieldState(
                decoding: [UInt8](row[1] as Data), coder: coder)
        }
        if !tail.changes(ofCase: caseRef).isEmpty {
            var version = VersionVector()
            try tail.replay(ofCase: caseRef, fields: &fields, version: &version, schema: schema)
            let wanted = Set(names)
            fields = fields.filter { wanted.contains($0.key.storageKey) }
        }
        return fields
    }

    /// Every open conflict, by case and field.
    public func openConflicts() throws(StoreError) -> [ConflictSummary] {
        let schema = schema
        return try read { db in
            let coder = try ReplicaTableCoder(db)
            let tail = try LogTail(db)
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT caseRecord.caseKey, fieldName.name, fieldState.state, fieldState.caseRef FROM fieldState
                    JOIN caseRecord ON caseRecord.id = fieldState.caseRef
                    JOIN fieldName ON fieldName.id = fieldState.fieldRef
                    WHERE fieldState.conflicted = 1
                    """)
            var conflicts: [ConflictSummary] = try rows.compactMap { row in
                // Cases the tail has changed since the checkpoint are read whole below.
                guard tail.changes(ofCase: row[3]).isEmpty,
                    case .register(let register) = try FieldState(decoding: [UInt8](row[2] as Data), coder: coder)
                else { return nil }
                return ConflictSummary(
                    caseID: try CaseID(row[0] as String), field: try FieldKey(parsing: row[1] as String),
                    siblings: register.siblings)
            }
            for caseRef in tail.byCase.keys {
                guard
                    let caseKey = try String.fetchOne(
                        db, sql: "SELECT caseKey FROM caseRecord WHERE id = ?", arguments: [caseRef])
                else { continue }
                let snapshot = try Self.snapshot(db, caseID: CaseID(caseKey), tail: tail, schema: schema)
                for field in snapshot.conflicts {
                    guard case .register(let register)? = snapshot.fields[field] else { continue }
                    conflicts.append(
                        ConflictSummary(caseID: snapshot.caseID, field: field, siblings: register.siblings))
                }
            }
            // Concurrent first entries of an access log both name its lead: not a
            // conflict anyone has to resolve.
            let accessLogs = Set(
                try Set(conflicts.map(\.caseID)).filter { caseID in
                    Self.isAccessLog(try Self.snapshot(db, caseID: caseID, tail: tail, schema: schema))
                })
            return conflicts.filter { !accessLogs.contains($0.caseID) }.sorted {
                ($0.caseID, $0.field) < ($1.caseID, $1.field)
            }
        }
    }

    /// How many changes wait for their causal dependencies.
    public func pendingCount() throws(StoreError) -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM pendingChange") ?? 0 }
    }

    /// Every change held here, whole, in arrival order (a causal order): the change
    /// log as it is stored. What an institution may receive, with its seals, is
    /// ``exportPage(for:)``'s (the one place that rule is applied to the log).
    public func encodedChanges() throws(StoreError) -> [[UInt8]] {
        try read { db in
            let coder = try ReplicaTableCoder(db)
            var caseKeys: [Int64: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, caseKey FROM caseRecord") { caseKeys[row[0]] = row[1] }
            var encoded: [[UInt8]] = []
            let segments = try Data.fetchCursor(db, sql: "SELECT body FROM changeSegment ORDER BY id")
            while let segment = try segments.next() {
                for entry in try ChangeLogSegment.entries(of: [UInt8](segment)) {
                    if entry.isBlank { continue }
                    guard let caseKey = caseKeys[entry.caseRef], let origin = coder.names[entry.replicaRef] else {
                        throw StoreError(code: .corrupt, message: "the change log names an unknown case or replica")
                    }
                    encoded.append(Change.encoded(caseID: caseKey, origin: origin.rawValue, rest: entry.rest))
                }
            }
            return encoded
        }
    }
}
