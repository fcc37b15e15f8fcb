/// Decides, for each field, the set semantics a merge uses.
///
/// The case schema implements this; the CRDT layer does not know the schema.
public protocol MergeRules: Sendable {
    func setSemantics(for field: FieldKey) -> SetSemantics
}

/// One replica's in-memory copy of one case: its change history, version vector and
/// merged field states.
///
/// This is the reference semantics of a case replica, with no I/O. The store applies
/// changes with the same ``FieldState`` operations; the simulator and the CRDT law
/// tests use this type directly.
public struct CaseDocument: Hashable, Sendable {
    public let caseID: CaseID
    /// Which changes this replica holds.
    public private(set) var version = VersionVector()
    /// Merged state of every written field.
    public private(set) var fields: [FieldKey: FieldState] = [:]
    /// Every applied change, by dot.
    public private(set) var history: [Dot: Change] = [:]
    /// Changes received before their causal dependencies, waiting for them.
    public private(set) var pending: [Dot: Change] = [:]

    public init(caseID: CaseID) {
        self.caseID = caseID
    }

    /// What happened to a received change.
    public enum Outcome: Hashable, Sendable {
        /// Applied, possibly together with pending changes it unblocked.
        case applied
        /// Already held; nothing changed.
        case duplicate
        /// Held back until the changes in its context arrive.
        case deferred
    }

    /// Whether `change` can be applied now: it is the origin's next change and
    /// everything it had seen is here.
    public func isReady(_ change: Change) -> Bool {
        version[change.origin] == change.seq - 1 && version.includes(change.context)
    }

    /// Receives a change: applies it if its dependencies are present, defers it
    /// otherwise, and then applies every pending change that became ready.
    ///
    /// - Throws: ``CRDTError`` if an operation does not fit its field; the document is
    ///   unchanged then (a change is atomic).
    @discardableResult
    public mutating func receive(_ change: Change, rules: some MergeRules) throws(CRDTError) -> Outcome {
        precondition(change.caseID == caseID, "a document only receives changes of its own case")
        if version.contains(change.dot) { return .duplicate }
        guard isReady(change) else {
            pending[change.dot] = change
            return .deferred
        }
        try applyReady(change, rules: rules)
        drainPending(rules: rules)
        return .applied
    }

    /// Applies every change of `other` this document lacks, in causal order.
    public mutating func merge(_ other: CaseDocument, rules: some MergeRules) throws(CRDTError) {
        let missing = other.history.values.filter { !version.contains($0.dot) }.sorted(by: Change.causalOrder)
        for change in missing { try receive(change, rules: rules) }
    }

    private mutating func applyReady(_ change: Change, rules: some MergeRules) throws(CRDTError) {
        var updated: [FieldKey: FieldState] = [:]
        for (index, op) in change.ops.enumerated() where !op.isWithheld {
            let key = op.field
            var state = updated[key] ?? fields[key] ?? .empty(for: op)
            try state.apply(op, index: index, of: change, semantics: rules.setSemantics(for: key))
            updated[key] = state
        }
        fields.merge(updated) { _, new in new }
        version[change.origin] = change.seq
        history[change.dot] = change
        pending[change.dot] = nil
    }

    private mutating func drainPending(rules: some MergeRules) {
        var progressed = true
        while progressed {
            progressed = false
            for change in pending.values.sorted(by: Change.causalOrder) where isReady(change) {
                if (try? applyReady(change, rules: rules)) == nil {
                    pending[change.dot] = nil
                }
                progressed = true
            }
        }
    }

    /// The canonical bytes of the merged state: equal on two replicas exactly when
    /// they show the same case.
    public var stateDigest: [UInt8] {
        var writer = BinaryWriter()
        for (key, state) in fields.sorted(by: { $0.key < $1.key }) {
            writer.writeString(key.storageKey)
            writer.writeBlob(state.encoded())
        }
        return writer.bytes
    }
}
