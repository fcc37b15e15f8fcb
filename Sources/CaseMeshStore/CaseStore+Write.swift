public import CaseMeshCRDT
import CaseMeshModel
import GRDB

extension CaseStore {
    /// Opens a new case: this replica's institution becomes its first participant and
    /// its lead institution, in the same change as `ops`.
    ///
    /// - Parameters:
    ///   - ops: further writes to make in the opening change (each checked against the schema).
    ///   - generator: the source of the case ID's randomness.
    ///   - record: the access-log entry of the person opening it, committed in the
    ///     same transaction as the case (so no case exists without its entry).
    /// - Returns: the opening change.
    /// - Throws: ``StoreError`` `invalidWrite` when an operation does not fit the schema.
    public func openCase(
        ops: [FieldOperation] = [], using generator: inout some RandomNumberGenerator,
        recording record: AccessRecord? = nil
    ) throws(StoreError) -> Change {
        let caseID = CaseID.random(using: &generator)
        let institution = replicaID.institution.rawValue
        let opening: [FieldOperation] = [
            .insert(CaseField.participants, institution),
            .assign(CaseField.leadInstitution, .string(institution)),
        ]
        var lead = institution
        for case .assign(let field, .string(let name)) in ops where field == Entitlement.lead { lead = name }
        let explicitLead = ops.contains { $0.field == CaseField.leadInstitution }
        let access = try record.map { record throws(StoreError) in
            try accessLogWrites(for: [caseID], record, leads: [caseID: lead])
        }
        return try commit(
            caseID: caseID, ops: (explicitLead ? [opening[0]] : opening) + ops, isNewCase: true, access: access ?? [])
    }

    /// Makes one local change to an existing case: all of `ops` or none of them.
    ///
    /// Register writes supersede every value this replica holds for the field, so a
    /// write to a conflicted register resolves the conflict.
    ///
    /// - Parameter record: the access-log entry of the person writing, committed in
    ///   the same transaction as the change (an edit never lands without its entry).
    /// - Returns: the committed change, durable when this returns.
    /// - Throws: ``StoreError`` `caseNotFound`, `withdrawn` (with a `record`: this
    ///   institution's right to the case has ended) or `invalidWrite`.
    @discardableResult
    public func write(caseID: CaseID, ops: [FieldOperation], recording record: AccessRecord? = nil) throws(StoreError)
        -> Change
    {
        // A person (a write with its access entry) may not edit a case withdrawn from
        // their institution; the system's own writes (and a simulation's) are not asked.
        if record != nil {
            try requireEntitled(caseID)
            try moveSpilledAccess()
        }
        // A change that hands the case over: its access entry already goes to the new
        // lead, which from then on receives the case's access log (and, from whichever
        // node holds it, the entries written before).
        var leads: [CaseID: String] = [:]
        for case .assign(let field, .string(let name)) in ops where field == Entitlement.lead { leads[caseID] = name }
        let access = try record.map { record throws(StoreError) in
            try accessLogWrites(for: [caseID], record, leads: leads)
        }
        return try commit(caseID: caseID, ops: ops, isNewCase: false, access: access ?? [])
    }

    /// Opens a case for a report an intake channel delivered, once per report: the
    /// channel's own message ID is recorded in the same transaction, and a report
    /// delivered again returns the case it opened.
    ///
    /// - Returns: the case, and whether this call opened it.
    public func openIntakeCase(
        channel: String, messageID: String, ops: [FieldOperation], using generator: inout some RandomNumberGenerator,
        recording record: AccessRecord
    ) throws(StoreError) -> (caseID: CaseID, opened: Bool) {
        if let known = try intakeCase(channel: channel, messageID: messageID) { return (known, false) }
        let caseID = CaseID.random(using: &generator)
        let institution = replicaID.institution.rawValue
        let opening: [FieldOperation] = [
            .insert(Entitlement.participants, institution), .assign(Entitlement.lead, .string(institution)),
        ]
        let access = try accessLogWrites(for: [caseID], record, leads: [caseID: institution])
        let replicaID = replicaID
        let now = clock.nowMillis()
        return try withApplySession(wallMillis: now, checkpoint: true) { session in
            // Checked again inside the write transaction: two deliveries at once open one case.
            if let known = try String.fetchOne(
                session.database, sql: "SELECT caseKey FROM intakeReport WHERE channel = ? AND messageID = ?",
                arguments: [channel, messageID])
            {
                return (try CaseID(known), false)
            }
            _ = try session.commitLocal(caseID: caseID, origin: replicaID, ops: opening + ops, isNewCase: true)
            try Self.commit(access, in: session)
            try session.database.execute(
                sql: "INSERT INTO intakeReport (channel, messageID, caseKey, receivedAt) VALUES (?, ?, ?, ?)",
                arguments: [channel, messageID, caseID.rawValue, Int64(clamping: now)])
            return (caseID, true)
        }
    }

    /// The case a channel's report opened, if it was delivered before.
    public func intakeCase(channel: String, messageID: String) throws(StoreError) -> CaseID? {
        let key = try read { db in
            try String.fetchOne(
                db, sql: "SELECT caseKey FROM intakeReport WHERE channel = ? AND messageID = ?",
                arguments: [channel, messageID])
        }
        return try key.map { text throws(StoreError) in try Self.wrapDatabaseErrors { try CaseID(text) } }
    }

    /// Writes a change without the role rule every receiver applies (the lead and
    /// referral answers of ``RoleAct``): what a modified or hostile node would send,
    /// for tests of the receivers' side.
    @_spi(Testing) public func writeSkippingRoleRule(caseID: CaseID, ops: [FieldOperation]) throws(StoreError)
        -> Change
    {
        let replicaID = replicaID
        return try withApplySession(wallMillis: clock.nowMillis(), checkpoint: true) { session in
            session.checksRoles = false
            return try session.commitLocal(caseID: caseID, origin: replicaID, ops: ops, isNewCase: false)
        }
    }

    private func commit(
        caseID: CaseID, ops: [FieldOperation], isNewCase: Bool, access: [AccessLogWrite]
    ) throws(StoreError) -> Change {
        let replicaID = replicaID
        return try withApplySession(wallMillis: clock.nowMillis(), checkpoint: true) { session in
            let change = try session.commitLocal(caseID: caseID, origin: replicaID, ops: ops, isNewCase: isNewCase)
            try Self.commit(access, in: session)
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
    /// - Parameters:
    ///   - changes: decoded changes with their encoded bytes, as received.
    ///   - batchSize: changes per transaction.
    ///   - progress: called after each transaction commits, with the totals so far;
    ///     what it reports as applied is durable.
    /// - Returns: what happened to each change, in aggregate.
    /// - Throws: ``StoreError`` `database` only when storage itself fails; the failing
    ///   transaction is rolled back and earlier ones stay durable.
    public func apply(
        _ changes: [(change: Change, body: [UInt8])], batchSize: Int = 10_000, authentication: BundleSeals,
        progress: (ApplyReport) -> Void = { _ in }
    ) throws(StoreError) -> ApplyReport {
        try receive(changes, batchSize: batchSize, authentication: authentication, progress: progress)
    }

    /// Applies received changes without authenticating them: for tests, benchmarks,
    /// fuzzing and the simulator's stores, never for what comes from outside (a
    /// bundle goes through ``apply(_:batchSize:authentication:progress:)``).
    @_spi(Testing)
    public func apply(
        _ changes: [(change: Change, body: [UInt8])], batchSize: Int = 10_000,
        progress: (ApplyReport) -> Void = { _ in }
    ) throws(StoreError) -> ApplyReport {
        try receive(changes, batchSize: batchSize, authentication: nil, progress: progress)
    }

    private func receive(
        _ changes: [(change: Change, body: [UInt8])], batchSize: Int, authentication: BundleSeals?,
        progress: (ApplyReport) -> Void
    ) throws(StoreError) -> ApplyReport {
        var total = ApplyReport()
        // A bundle's seals are verified over the whole bundle first (a seal's changes
        // may fall into different transactions below); what fails is quarantined.
        var located: [(sealRef: Int64, leaf: Int)?] = Array(repeating: (0, 0), count: changes.count)
        if let authentication {
            let all = changes
            (located, total) = try withApplySession(wallMillis: clock.nowMillis(), checkpoint: false) { session in
                session.sender = authentication.sender
                var report = ApplyReport()
                let located = try session.authenticate(
                    all.map(\.change), bodies: all.map(\.body), leaves: authentication.leaves,
                    seals: authentication.seals, sender: authentication.sender,
                    certificates: authentication.certificates, distrusted: authentication.distrusted,
                    report: &report)
                return (located, report)
            }
        }
        let order = changes.indices.sorted { Change.causalOrder(changes[$0].change, changes[$1].change) }
        var start = 0
        repeat {
            let batch = order[start..<min(start + max(1, batchSize), order.count)]
            let isLast = batch.endIndex == order.endIndex
            let institution = replicaID.institution
            let places = located
            let sender = authentication?.sender
            let report = try withApplySession(wallMillis: clock.nowMillis(), checkpoint: isLast) { session in
                var report = ApplyReport()
                session.sender = sender
                let dropped = try session.screenPurged(
                    batch.map { changes[$0].change }, institution: institution, report: &report)
                for (position, index) in batch.enumerated() where !dropped.contains(position) {
                    guard let place = places[index] else { continue }
                    try session.receive(
                        changes[index].change, body: changes[index].body, sealRef: place.sealRef, leaf: place.leaf,
                        report: &report)
                }
                try session.drainPending(report: &report)
                return report
            }
            total.add(report)
            progress(total)
            start += batch.count
        } while start < order.count
        return total
    }

    /// Applies received changes, encoding each one, without authenticating them
    /// (tests, benchmarks, the simulator).
    @_spi(Testing)
    public func apply(_ changes: [Change], batchSize: Int = 10_000) throws(StoreError) -> ApplyReport {
        try apply(changes.map { ($0, $0.encoded()) }, batchSize: batchSize)
    }
}
