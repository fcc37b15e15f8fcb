/// How a set resolves an addition concurrent with a removal of the same element.
public enum SetSemantics: String, Hashable, Sendable, Codable {
    /// Observed-remove set where a concurrent addition survives the removal
    /// (participating institutions, tags, crisis signals).
    case addWins = "add-wins"
    /// A concurrent removal beats the addition (consent recipients: a withdrawal
    /// beats a concurrent grant).
    case removeWins = "remove-wins"
}

/// An observed-remove set of strings, add-wins or remove-wins.
///
/// Each addition is tagged with the dot of its change; a removal removes the
/// additions its change had seen. The remove-wins variant also keeps removals that no
/// later addition has seen, and hides the element while any remains.
public struct SetState: Hashable, Sendable {
    /// An addition or a pending removal of one element.
    public struct Tag: Hashable, Comparable, Sendable {
        public var element: String
        public var dot: Dot

        public init(element: String, dot: Dot) {
            self.element = element
            self.dot = dot
        }

        public static func < (lhs: Tag, rhs: Tag) -> Bool { (lhs.element, lhs.dot) < (rhs.element, rhs.dot) }
    }

    /// Additions not yet removed, sorted.
    public private(set) var additions: [Tag]
    /// Removals not yet overridden by a later addition (remove-wins only), sorted.
    public private(set) var removals: [Tag]

    public init(additions: [Tag] = [], removals: [Tag] = []) {
        self.additions = additions.sorted()
        self.removals = removals.sorted()
    }

    /// The elements currently in the set, sorted.
    public func elements(_ semantics: SetSemantics) -> [String] {
        var result: [String] = []
        for tag in additions where result.last != tag.element {
            if semantics == .removeWins && removals.contains(where: { $0.element == tag.element }) { continue }
            result.append(tag.element)
        }
        return result
    }

    /// Whether `element` is in the set.
    public func contains(_ element: String, _ semantics: SetSemantics) -> Bool {
        guard additions.contains(where: { $0.element == element }) else { return false }
        return semantics == .addWins || !removals.contains { $0.element == element }
    }

    /// Adds `element` on behalf of change `dot` that had seen `context`.
    public mutating func insert(_ element: String, dot: Dot, context: VersionVector, semantics: SetSemantics) {
        clearObserved(element, dot: dot, context: context)
        insertSorted(Tag(element: element, dot: dot), into: &additions)
    }

    /// Removes the additions of `element` that change `dot` had seen.
    public mutating func remove(_ element: String, dot: Dot, context: VersionVector, semantics: SetSemantics) {
        clearObserved(element, dot: dot, context: context)
        if semantics == .removeWins {
            insertSorted(Tag(element: element, dot: dot), into: &removals)
        }
    }

    private mutating func clearObserved(_ element: String, dot: Dot, context: VersionVector) {
        let observed = { (tag: Tag) in tag.element == element && (tag.dot == dot || context.contains(tag.dot)) }
        additions.removeAll(where: observed)
        removals.removeAll(where: observed)
    }

    private func insertSorted(_ tag: Tag, into tags: inout [Tag]) {
        let position = tags.firstIndex { tag < $0 } ?? tags.endIndex
        tags.insert(tag, at: position)
    }
}
