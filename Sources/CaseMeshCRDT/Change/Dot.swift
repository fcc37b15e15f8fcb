/// The identity of one change within a case: its origin replica and that origin's
/// sequence number in the case.
///
/// A change is identified by its dot, not by who delivered it, which is what makes
/// relaying safe.
public struct Dot: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var origin: ReplicaID
    public var seq: UInt64

    public init(origin: ReplicaID, seq: UInt64) {
        self.origin = origin
        self.seq = seq
    }

    public static func < (lhs: Dot, rhs: Dot) -> Bool { (lhs.origin, lhs.seq) < (rhs.origin, rhs.seq) }

    public var description: String { "\(origin)#\(seq)" }
}
