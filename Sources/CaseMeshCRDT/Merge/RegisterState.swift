/// A multi-value register: last-writer-wins by (hlc, replica) for display, with
/// concurrent writes kept as siblings until a write that has seen them all resolves
/// them.
///
/// With causal delivery (a change is applied only after everything in its context),
/// the surviving siblings are exactly the writes no other write has seen, whatever the
/// delivery order, so replicas holding the same changes hold the same state.
public struct RegisterState: Hashable, Sendable {
    /// One surviving write.
    public struct Sibling: Hashable, Sendable {
        public var value: Value
        public var hlc: HybridTimestamp
        public var dot: Dot

        public init(value: Value, hlc: HybridTimestamp, dot: Dot) {
            self.value = value
            self.hlc = hlc
            self.dot = dot
        }

        /// The provisional winner order: later (hlc, replica) first.
        static func precedes(_ lhs: Sibling, _ rhs: Sibling) -> Bool {
            (lhs.hlc, lhs.dot.origin, lhs.dot.seq) > (rhs.hlc, rhs.dot.origin, rhs.dot.seq)
        }
    }

    /// The surviving writes, provisional winner first.
    public private(set) var siblings: [Sibling]

    public init(siblings: [Sibling] = []) {
        self.siblings = siblings.sorted(by: Sibling.precedes)
    }

    /// The provisional winner's value, or nil for a register never written.
    public var value: Value? { siblings.first?.value }

    /// Whether concurrent writes are waiting for a person to resolve them.
    public var isConflict: Bool { siblings.count > 1 }

    /// Applies a write made by change `dot` that had seen `context`.
    ///
    /// Siblings the writer had seen are superseded; the write joins the rest.
    /// Applying the same write twice leaves the state unchanged.
    public mutating func assign(_ value: Value, hlc: HybridTimestamp, dot: Dot, context: VersionVector) {
        siblings.removeAll { $0.dot == dot || context.contains($0.dot) }
        let sibling = Sibling(value: value, hlc: hlc, dot: dot)
        let position = siblings.firstIndex { Sibling.precedes(sibling, $0) } ?? siblings.endIndex
        siblings.insert(sibling, at: position)
    }
}
