public import CaseMeshCRDT
public import CaseMeshModel
public import CaseMeshStore

/// The operations a person performs on cases, with their validation and their
/// access entry in the same transaction: the one place both the command line and
/// the HTTP API call, so a rule lives once. Each surface keeps only its own work
/// (parsing arguments and printing; routing and JSON).
public struct CaseOperations: Sendable {
    public let store: CaseStore

    public init(store: CaseStore) { self.store = store }

    /// An operation refused for what was asked (not for the store): the surfaces
    /// answer it as a usage error (CLI) or a 4xx (API).
    public struct Refusal: Error, Sendable, CustomStringConvertible {
        public enum Kind: Sendable { case invalid, notFound, conflict, forbidden }
        public var kind: Kind
        public var message: String
        /// A stable name of the refusal (`stage.reopen`), for a screen that says it
        /// in the user's language; nil for one that only has its message.
        public var code: String?
        public var description: String { message }

        public init(kind: Kind, message: String, code: String? = nil) {
            self.kind = kind
            self.message = message
            self.code = code
        }
    }

    /// One field assignment from text, checked against the schema.
    public func assignment(_ field: String, _ value: String) throws(StoreError) -> FieldOperation {
        try CaseStore.wrapInput {
            let key = try FieldKey(parsing: field)
            let op = FieldOperation.assign(key, try store.schema.parseValue(value, for: key))
            try store.schema.validate(op)
            return op
        }
    }

    /// Resolves an open conflict by writing the value to keep: a change like any
    /// other, which every replica merges.
    public func resolve(caseID: CaseID, field: String, value: String, recording record: AccessRecord) throws
        -> Change
    {
        let op = try assignment(field, value)
        guard try store.openConflicts().contains(where: { $0.caseID == caseID && $0.field == op.field }) else {
            throw Refusal(kind: .conflict, message: "no open conflict on \(op.field) in \(caseID)")
        }
        return try store.write(caseID: caseID, ops: [op], recording: record)
    }

    /// Records a person's resident registration number as its keyed hash; the
    /// number itself is never stored or sent.
    public func identify(
        caseID: CaseID, person: String, number: String, hasher: ResidentNumberHasher, recording record: AccessRecord
    ) throws(StoreError) -> Change {
        let hash = try hasher.hash(number)
        let op = FieldOperation.assign(FieldKey(entity: "person", instance: person, field: "rrnHash"), .string(hash))
        try CaseStore.wrapInput { try store.schema.validate(op) }
        return try store.write(caseID: caseID, ops: [op], recording: record)
    }

    /// The cases (and person instances) holding a resident registration number,
    /// compared by keyed hash; each case found records a read.
    public func findPerson(number: String, hasher: ResidentNumberHasher, recording record: AccessRecord)
        throws(StoreError) -> [(caseID: CaseID, person: String)]
    {
        let hash = try hasher.hash(number)
        var found: [(caseID: CaseID, person: String)] = []
        for summary in try store.caseSummaries() {
            let snapshot = try store.snapshot(of: summary.caseID)
            for (key, state) in snapshot.fields where key.entity == "person" && key.field == "rrnHash" {
                if case .register(let register) = state,
                    register.siblings.contains(where: { $0.value == .string(hash) })
                {
                    found.append((summary.caseID, key.instance))
                }
            }
        }
        try store.recordAccess(to: Array(Set(found.map(\.caseID))).sorted(), record)
        return found.sorted { ($0.caseID.rawValue, $0.person) < ($1.caseID.rawValue, $1.person) }
    }

    /// The consent record of a share, from what a person gave.
    public static func grant(
        institutions: [String], consent: String?, basis: String, categories: [String], purposes: [String],
        until: String?, subject: String, grantor: String
    ) throws(StoreError) -> ConsentGrant {
        guard !institutions.isEmpty else {
            throw StoreError(code: .invalidWrite, message: "name at least one institution")
        }
        var parsedCategories: [DataCategory] = []
        for text in categories {
            guard let category = DataCategory(rawValue: text) else {
                throw StoreError(
                    code: .invalidWrite, message: "unknown data category '\(text)': use general, sensitive or unique-id"
                )
            }
            parsedCategories.append(category)
        }
        return try CaseStore.wrapInput {
            let recipients = try institutions.map { try InstitutionID($0) }
            return ConsentGrant(
                instance: consent ?? ConsentGrant.instance(for: recipients[0]), recipients: recipients, basis: basis,
                categories: parsedCategories, purposes: purposes, validUntil: until, subject: subject, grantor: grantor)
        }
    }
}

extension CaseStore {
    /// Runs `body`, turning identifier and schema errors into `invalidWrite`.
    public static func wrapInput<T>(_ body: () throws -> T) throws(StoreError) -> T {
        do {
            return try body()
        } catch let error as StoreError {
            throw error
        } catch let error as CRDTError {
            throw StoreError(code: .invalidWrite, message: error.message)
        } catch let error as ModelError {
            throw StoreError(code: .invalidWrite, message: error.message)
        } catch {
            throw StoreError(code: .invalidWrite, message: "\(error)")
        }
    }
}
