public import CaseMeshCRDT
public import CaseMeshModel
import GRDB

extension CaseStore {
    /// The institutions this node knows to exist: its own, and those of every node
    /// whose change it holds or whose certificate it verified.
    ///
    /// Without a consortium directory installed (``memberDirectory()``), this is what
    /// a share is checked against, so that a typo (`mental-health` for
    /// `mental.centre`) does not make a participant of an institution nobody runs.
    public func knownInstitutions() throws(StoreError) -> Set<InstitutionID> {
        let own = replicaID.institution
        return try read { db in
            var known: Set<InstitutionID> = [own]
            for name in try String.fetchAll(db, sql: "SELECT name FROM replica UNION SELECT replica FROM signer") {
                if let replica = try? ReplicaID(name) { known.insert(replica.institution) }
            }
            return known
        }
    }

    /// Refuses an institution this node has never heard of, unless it is named in
    /// `allowingNew` (the operator vouches for it).
    ///
    /// With a consortium directory installed, the directory decides: an institution
    /// not in it is refused whatever `allowingNew` says.
    public func requireKnown(
        _ institutions: [InstitutionID], allowingNew: Set<InstitutionID> = []
    ) throws(StoreError) {
        if let directory = try memberDirectory() {
            for institution in institutions where directory.member(institution) == nil {
                throw StoreError(
                    code: .invalidWrite,
                    message: "\(institution) is not a member of the consortium directory (serial \(directory.serial), "
                        + "\(directory.members.count) members): check the ID with 'casemesh directory show', or ask the "
                        + "consortium to add it")
            }
            return
        }
        let known = try knownInstitutions()
        for institution in institutions where !known.contains(institution) && !allowingNew.contains(institution) {
            throw StoreError(
                code: .invalidWrite,
                message: "no node of \(institution) is known here (no change or certificate of it has been seen); "
                    + "check the name, or name it with --allow-new-institution \(institution)")
        }
    }

    /// Shares a case under a consent (or a statute): the recipients join the
    /// participants and the consent entity records basis, purposes, categories and end.
    ///
    /// - Throws: ``StoreError`` `invalidWrite` for an unknown institution, a consent
    ///   that ends in the past or names no recipient; `withdrawn`, `caseNotFound`.
    @discardableResult
    public func share(
        _ caseID: CaseID, grant: ConsentGrant, allowingNew: Set<InstitutionID> = [], recording record: AccessRecord
    ) throws(StoreError) -> Change {
        do {
            try grant.validate(nowMillis: clock.nowMillis())
        } catch {
            throw StoreError(code: .invalidWrite, message: error.message, cause: error)
        }
        try requireKnown(grant.recipients, allowingNew: allowingNew)
        for op in grant.ops() {
            do { try schema.validate(op) } catch {
                throw StoreError(code: .invalidWrite, message: error.message, cause: error)
            }
        }
        return try write(caseID: caseID, ops: grant.ops(), recording: record)
    }

    /// Withdraws a consent from one recipient (a withdrawal beats a concurrent grant).
    ///
    /// - Parameter instance: the consent entity's instance (default: the one named
    ///   after the institution, as ``share(_:grant:allowingNew:recording:)`` makes it).
    /// - Throws: ``StoreError`` `invalidWrite` when no consent of the case names the
    ///   institution among its recipients (nothing to withdraw).
    @discardableResult
    public func withdraw(
        _ caseID: CaseID, from institution: InstitutionID, consent instance: String? = nil,
        recording record: AccessRecord
    ) throws(StoreError) -> Change {
        try requireEntitled(caseID)
        let snapshot = try snapshot(of: caseID)
        let instance = instance ?? ConsentGrant.instance(for: institution)
        let key = FieldKey(entity: "consent", instance: instance, field: "recipients")
        guard case .set(let recipients)? = snapshot.fields[key],
            recipients.contains(institution.rawValue, schema.setSemantics(for: key))
        else {
            let holders = snapshot.fields.compactMap { field, state -> String? in
                guard field.entity == "consent", field.field == "recipients", case .set(let set) = state,
                    set.contains(institution.rawValue, schema.setSemantics(for: field))
                else { return nil }
                return field.instance
            }
            throw StoreError(
                code: .invalidWrite,
                message: holders.isEmpty
                    ? "\(institution) holds no consent on case \(caseID): nothing to withdraw"
                    : "consent#\(instance) does not name \(institution); its consent is "
                        + holders.sorted().map { "consent#\($0)" }.joined(separator: ", ") + " (give --consent)")
        }
        let grant = ConsentGrant(instance: instance, recipients: [])
        return try write(caseID: caseID, ops: [grant.withdrawal(from: institution)], recording: record)
    }
}
