/// Which changes of one case a replica holds: for each origin, the highest sequence
/// number held. Sequences are dense, so `[a: 3]` means changes 1, 2 and 3 of `a`.
///
/// A change's ``Change/context`` is the version vector its origin had seen when it
/// wrote; a write whose context contains another write's dot supersedes it, one whose
/// context does not is concurrent with it.
///
/// Kept as an array sorted by origin: a case has a handful of origins, and a linear
/// scan beats hashing replica IDs on the apply hot path.
public struct VersionVector: Hashable, Sendable, CustomStringConvertible {
    /// (origin, highest sequence held), sorted by origin; never a 0 sequence.
    public private(set) var sortedEntries: [(origin: ReplicaID, seq: UInt64)]

    public init(_ entries: [ReplicaID: UInt64] = [:]) {
        sortedEntries = entries.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map {
            (origin: $0.key, seq: $0.value)
        }
    }

    /// The highest sequence held from `origin` (0 when none).
    public subscript(origin: ReplicaID) -> UInt64 {
        get {
            for entry in sortedEntries where entry.origin == origin { return entry.seq }
            return 0
        }
        set {
            let position = sortedEntries.firstIndex { !($0.origin < origin) } ?? sortedEntries.endIndex
            let present = position < sortedEntries.endIndex && sortedEntries[position].origin == origin
            switch (present, newValue) {
            case (true, 0): sortedEntries.remove(at: position)
            case (true, _): sortedEntries[position].seq = newValue
            case (false, 0): break
            case (false, _): sortedEntries.insert((origin: origin, seq: newValue), at: position)
            }
        }
    }

    /// Origin → highest sequence held.
    public var entries: [ReplicaID: UInt64] {
        Dictionary(uniqueKeysWithValues: sortedEntries.map { ($0.origin, $0.seq) })
    }

    /// Whether the change identified by `dot` is covered by this vector.
    public func contains(_ dot: Dot) -> Bool { self[dot.origin] >= dot.seq }

    /// Whether every change covered by `other` is covered by this vector.
    public func includes(_ other: VersionVector) -> Bool {
        var index = sortedEntries.startIndex
        for entry in other.sortedEntries {
            while index < sortedEntries.endIndex && sortedEntries[index].origin < entry.origin { index += 1 }
            guard index < sortedEntries.endIndex, sortedEntries[index].origin == entry.origin,
                sortedEntries[index].seq >= entry.seq
            else { return false }
        }
        return true
    }

    /// The pointwise maximum of two vectors.
    public func merging(_ other: VersionVector) -> VersionVector {
        var result = self
        for entry in other.sortedEntries where entry.seq > result[entry.origin] { result[entry.origin] = entry.seq }
        return result
    }

    /// The number of changes covered.
    public var totalCount: UInt64 { sortedEntries.reduce(0) { $0 + $1.seq } }

    public var description: String {
        "{" + sortedEntries.map { "\($0.origin):\($0.seq)" }.joined(separator: ", ") + "}"
    }

    public static func == (lhs: VersionVector, rhs: VersionVector) -> Bool {
        lhs.sortedEntries.elementsEqual(rhs.sortedEntries) { $0.origin == $1.origin && $0.seq == $1.seq }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in sortedEntries {
            hasher.combine(entry.origin)
            hasher.combine(entry.seq)
        }
    }
}
