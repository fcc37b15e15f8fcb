/// Which changes of one case a replica holds: for each origin, the highest sequence
/// number held. Sequences are dense, so `[a: 3]` means changes 1, 2 and 3 of `a`.
///
/// A change's ``Change/context`` is the version vector its origin had seen when it
/// wrote; a write whose context contains another write's dot supersedes it, one whose
/// context does not is concurrent with it.
public struct VersionVector: Hashable, Sendable, CustomStringConvertible {
    /// Origin → highest sequence held. Origins with nothing held are absent, never 0.
    public private(set) var entries: [ReplicaID: UInt64]

    public init(_ entries: [ReplicaID: UInt64] = [:]) {
        self.entries = entries.filter { $0.value > 0 }
    }

    /// The highest sequence held from `origin` (0 when none).
    public subscript(origin: ReplicaID) -> UInt64 {
        get { entries[origin] ?? 0 }
        set { entries[origin] = newValue == 0 ? nil : newValue }
    }

    /// Whether the change identified by `dot` is covered by this vector.
    public func contains(_ dot: Dot) -> Bool { self[dot.origin] >= dot.seq }

    /// Whether every change covered by `other` is covered by this vector.
    public func includes(_ other: VersionVector) -> Bool {
        other.entries.allSatisfy { self[$0.key] >= $0.value }
    }

    /// The pointwise maximum of two vectors.
    public func merging(_ other: VersionVector) -> VersionVector {
        var result = self
        for (origin, seq) in other.entries where seq > result[origin] { result[origin] = seq }
        return result
    }

    /// The entries sorted by origin, for canonical encoding and display.
    public var sortedEntries: [(origin: ReplicaID, seq: UInt64)] {
        entries.sorted { $0.key < $1.key }.map { (origin: $0.key, seq: $0.value) }
    }

    /// The number of changes covered.
    public var totalCount: UInt64 { entries.values.reduce(0, +) }

    public var description: String {
        "{" + sortedEntries.map { "\($0.origin):\($0.seq)" }.joined(separator: ", ") + "}"
    }
}
