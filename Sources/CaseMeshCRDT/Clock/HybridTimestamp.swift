/// A hybrid logical clock reading: physical milliseconds since the Unix epoch plus a
/// logical counter that orders events within the same millisecond.
///
/// Timestamps order writes for last-writer-wins and log ordering. Ties between
/// replicas are broken by the replica ID, never by arrival order.
public struct HybridTimestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    public var physical: UInt64
    /// Orders events that share a physical millisecond.
    public var logical: UInt32

    public init(physical: UInt64, logical: UInt32 = 0) {
        self.physical = physical
        self.logical = logical
    }

    /// The zero timestamp, earlier than every real one.
    public static let zero = HybridTimestamp(physical: 0, logical: 0)

    public static func < (lhs: HybridTimestamp, rhs: HybridTimestamp) -> Bool {
        (lhs.physical, lhs.logical) < (rhs.physical, rhs.logical)
    }

    public var description: String { "\(physical).\(logical)" }
}
