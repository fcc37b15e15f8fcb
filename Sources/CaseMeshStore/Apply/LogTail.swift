import CaseMeshCRDT
import CaseMeshModel
import Foundation
import GRDB

/// The changes appended to the change log since the last checkpoint of
/// materialized state, decoded, in arrival order.
///
/// Materialized state (field states, version vectors) is written at checkpoints,
/// not after every batch: a long apply then writes each field once instead of once
/// per batch, and every batch commits only its slice of the append-only log. Until
/// the next checkpoint, the tail is replayed on top of the checkpointed state by
/// readers (``CaseStore/snapshot(of:)``) and by a writer whose cache is cold, with
/// the same merge operations, so everyone sees the same cases.
struct LogTail {
    struct Entry {
        var arrival: Int64
        var caseRef: Int64
        var change: Change
    }

    let checkpointArrival: Int64
    private(set) var entries: [Entry] = []
    private(set) var byCase: [Int64: [Int]] = [:]

    var isEmpty: Bool { entries.isEmpty }

    /// Reads the tail in the current transaction.
    init(_ db: Database) throws {
        checkpointArrival =
            try Int64.fetchOne(db.cachedStatement(sql: "SELECT checkpointArrival FROM replicaInfo WHERE singleton = 1"))
            ?? 1
        let segments = try Row.fetchAll(
            db.cachedStatement(sql: ChangeLogSegment.segments(from: "?1", columns: "firstArrival, body")),
            arguments: [checkpointArrival])
        guard !segments.isEmpty else { return }
        var caseKeys: [Int64: String] = [:]
        var origins: [Int64: String] = [:]
        for row in segments {
            var arrival: Int64 = row[0]
            for stored in try ChangeLogSegment.entries(of: [UInt8](row[1] as Data)) {
                defer { arrival += 1 }
                guard arrival >= checkpointArrival, !stored.isBlank else { continue }
                if caseKeys[stored.caseRef] == nil {
                    caseKeys[stored.caseRef] = try String.fetchOne(
                        db.cachedStatement(sql: "SELECT caseKey FROM caseRecord WHERE id = ?"),
                        arguments: [stored.caseRef])
                }
                if origins[stored.replicaRef] == nil {
                    origins[stored.replicaRef] = try String.fetchOne(
                        db.cachedStatement(sql: "SELECT name FROM replica WHERE id = ?"), arguments: [stored.replicaRef]
                    )
                }
                guard let caseKey = caseKeys[stored.caseRef], let origin = origins[stored.replicaRef] else {
                    throw StoreError(code: .corrupt, message: "the change log names an unknown case or replica")
                }
                let change = try Change(decoding: Change.encoded(caseID: caseKey, origin: origin, rest: stored.rest))
                byCase[stored.caseRef, default: []].append(entries.count)
                entries.append(Entry(arrival: arrival, caseRef: stored.caseRef, change: change))
            }
        }
    }

    /// The tail's changes to one case, in arrival order.
    func changes(ofCase caseRef: Int64) -> [Change] {
        (byCase[caseRef] ?? []).map { entries[$0].change }
    }

    /// Replays the tail's changes to one case on top of its checkpointed state.
    func replay(
        ofCase caseRef: Int64, fields: inout [FieldKey: FieldState], version: inout VersionVector, schema: CaseSchema
    ) throws {
        for change in changes(ofCase: caseRef) {
            // Operations on fields this schema lacks are held, not merged (ApplySession).
            for (index, op) in change.ops.enumerated() where !op.isWithheld && schema.knows(op.field) {
                var state = fields[op.field] ?? .empty(for: op)
                try state.apply(op, index: index, of: change, semantics: schema.setSemantics(for: op.field))
                fields[op.field] = state
            }
            version[change.origin] = change.seq
        }
    }
}
