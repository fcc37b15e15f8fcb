/// One field write inside a change.
///
/// The merge kind of the field decides which operations apply: `assign` to registers,
/// `insert` and `remove` to sets, `append` and `redact` to logs.
public enum FieldOperation: Hashable, Sendable {
    /// Writes a register; supersedes the values the change's context has seen.
    case assign(FieldKey, Value)
    /// Adds an element to a set.
    case insert(FieldKey, String)
    /// Removes the observed additions of an element from a set.
    case remove(FieldKey, String)
    /// Appends an entry to a log.
    case append(FieldKey, String)
    /// Hides an earlier log entry (the entry itself is never edited).
    case redact(FieldKey, LogEntryID)
    /// An operation withheld from this receiver, which its consent does not cover
    /// (a sensitive field, say): only the field and the SHA-256 of the operation's
    /// encoding, so the origin's seal still verifies. It changes nothing.
    case withheld(FieldKey, digest: [UInt8])

    /// The field this operation writes.
    public var field: FieldKey {
        switch self {
        case .assign(let field, _), .insert(let field, _), .remove(let field, _), .append(let field, _),
            .redact(let field, _), .withheld(let field, _):
            field
        }
    }

    /// Whether this operation was withheld from the receiver (see ``withheld(_:digest:)``).
    public var isWithheld: Bool {
        if case .withheld = self { return true }
        return false
    }

    /// The operation's own encoding (the part of the canonical change encoding it
    /// contributes), which a seal's digest covers operation by operation.
    public func encoded() -> [UInt8] {
        var writer = BinaryWriter(capacity: 48)
        encode(into: &writer)
        return writer.bytes
    }
}

/// The identity of a log entry: the change that appended it and the operation's
/// position in that change.
public struct LogEntryID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var dot: Dot
    public var index: UInt32

    public init(dot: Dot, index: UInt32) {
        self.dot = dot
        self.index = index
    }

    public static func < (lhs: LogEntryID, rhs: LogEntryID) -> Bool { (lhs.dot, lhs.index) < (rhs.dot, rhs.index) }

    public var description: String { "\(dot).\(index)" }
}
