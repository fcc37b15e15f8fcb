/// One local transaction on one case: several field writes applied all-or-nothing.
///
/// Within a case each origin numbers its changes densely (1, 2, 3, …). The
/// ``context`` is the case's version vector the origin had seen *before* writing this
/// change, so `context[origin] == seq - 1` always holds.
public struct Change: Hashable, Sendable {
    public var caseID: CaseID
    public var origin: ReplicaID
    public var seq: UInt64
    public var hlc: HybridTimestamp
    public var context: VersionVector
    public var ops: [FieldOperation]

    /// The most operations one change may carry.
    public static let maximumOperations = 4096

    public init(
        caseID: CaseID, origin: ReplicaID, seq: UInt64, hlc: HybridTimestamp, context: VersionVector,
        ops: [FieldOperation]
    ) {
        self.caseID = caseID
        self.origin = origin
        self.seq = seq
        self.hlc = hlc
        self.context = context
        self.ops = ops
    }

    /// The identity of this change.
    public var dot: Dot { Dot(origin: origin, seq: seq) }

    /// Checks the invariants every change must satisfy, whatever its schema.
    ///
    /// - Throws: ``CRDTError`` with code `invalidChange`.
    public func validateStructure() throws(CRDTError) {
        func fail(_ reason: String) -> CRDTError {
            CRDTError(code: .invalidChange, message: "change \(caseID) \(dot): \(reason)")
        }
        guard seq >= 1 else { throw fail("sequence numbers start at 1") }
        guard seq <= BinaryReader.maximumNumber, hlc.physical <= BinaryReader.maximumNumber else {
            throw fail("sequence number or timestamp out of range")
        }
        guard context[origin] == seq - 1 else {
            throw fail("context holds \(context[origin]) changes of its own origin, expected \(seq - 1)")
        }
        guard !ops.isEmpty else { throw fail("a change holds at least one operation") }
        guard ops.count <= Self.maximumOperations else {
            throw fail("\(ops.count) operations, at most \(Self.maximumOperations) allowed")
        }
        for case .redact(_, let target) in ops where !context.contains(target.dot) {
            throw fail("redacts \(target), which its origin had not seen")
        }
    }

    /// Orders changes so that every change comes after all changes in its context.
    ///
    /// Timestamps advance on every received change, so a change's HLC is later than
    /// every change it has seen; sorting by (hlc, origin, seq) is a causal order.
    public static func causalOrder(_ lhs: Change, _ rhs: Change) -> Bool {
        (lhs.hlc, lhs.origin, lhs.seq) < (rhs.hlc, rhs.origin, rhs.seq)
    }
}
