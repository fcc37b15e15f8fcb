public import CaseMeshCRDT
import GRDB

extension CaseStore {
    /// Opens a new case: this replica's institution becomes its first participant and
    /// its lead institution, in the same change as `ops`.
    ///
    /// - Parameters:
    ///   - ops: further writes to make in the opening change (each checked against the schema).
    ///   - generator: the source of the case ID's randomness.
    /// - Returns: the opening change.
    /// - Throws: ``StoreError`` `invalidWrite` when an operation does not fit the schema.
    public func openCase(
        ops: [FieldOperation] = [], using generator: inout some RandomNumberGenerator
    ) throws(StoreError) -> Change {
        let caseID = CaseID.random(using: &generator)
        let institution = replicaID.institution.rawValue
        let opening: [FieldOperation] = [
            .insert(FieldKey(entity: "case", field: "participants"), institution),
            .assign(FieldKey(entity: "case", field: "leadInstitution"), .string(institution)),
        ]
        let explicitLead = ops.contains { $0.field == FieldKey(entity: "case", field: "leadInstitution") }
        return try commit(caseID: caseID, ops: (explicitLead ? [opening[0]] : opening) + ops, isNewCase: true)
    }

    /// Makes one local change to an existing case: all of `ops` or none of them.
    ///
    /// Register writes supersede every value this replica holds for the field, so a
    /// write to a conflicted register resolves the conflict.
    ///
    /// - Returns: the committed change, durable when this returns.
    /// - Throws: ``StoreError`` `caseNotFound` or `invalidWrite`.
    @discardableResult
    public func write(caseID: CaseID, ops: [FieldOperation]) throws(StoreError) -> Change {
        try commit(caseID: caseID, ops: ops, isNewCase: false)
    }

    private func commit(caseID: CaseID, ops: [FieldOperation], isNewCase: Bool) throws(StoreError) -> Change {
        let wallMillis = clock.nowMillis()
        let schema = schema
        let replicaID = replicaID
        let drift = maximumDriftMillis
        return try write { db in
            let session = try ApplySession(db: db, schema: schema, wallMillis: wallMillis, maximumDriftMillis: drift)
            let change = try session.commitLocal(caseID: caseID, origin: replicaID, ops: ops, isNewCase: isNewCase)
            try session.flush()
            return change
        }
    }

    /// Applies received changes (from a bundle or a peer), in transactions of at most
    /// `batchSize` changes.
    ///
    /// Duplicates are skipped, changes whose causal dependencies are missing are held
    /// until they arrive, and invalid changes (schema, clock too far ahead) are refused
    /// and reported without blocking the rest.
    ///
    /// - Parameter changes: decoded changes with their encoded bytes, as received.
    /// - Returns: what happened to each change, in aggregate.
    /// - Throws: ``StoreError`` `database` only when storage itself fails; the failing
    ///   transaction is rolled back and earlier ones stay durable.
    public func apply(
        _ changes: [(change: Change, body: [UInt8])], batchSize: Int = 10_000
    ) throws(StoreError) -> ApplyReport {
        let schema = schema
        let drift = maximumDriftMillis
        let ordered = changes.sorted { Change.causalOrder($0.change, $1.change) }
        var total = ApplyReport()
        var start = 0
        repeat {
            let batch = Array(ordered[start..<min(start + max(1, batchSize), ordered.count)])
            let wallMillis = clock.nowMillis()
            let report = try write { db in
                var report = ApplyReport()
                let session = try ApplySession(db: db, schema: schema, wallMillis: wallMillis, maximumDriftMillis: drift)
                for item in batch { try session.receive(item.change, body: item.body, report: &report) }
                try session.drainPending(report: &report)
                try session.flush()
                return report
            }
            total.add(report)
            start += batch.count
        } while start < ordered.count
        return total
    }

    /// Applies received changes, encoding each one.
    public func apply(_ changes: [Change], batchSize: Int = 10_000) throws(StoreError) -> ApplyReport {
        try apply(changes.map { ($0, $0.encoded()) }, batchSize: batchSize)
    }
}
