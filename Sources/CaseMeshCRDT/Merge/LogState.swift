/// An append-only log: notes, visits, stage events, service deliveries.
///
/// Entries are ordered by (hlc, replica) and never edited; a redaction is a new entry
/// that hides an earlier one.
public struct LogState: Hashable, Sendable {
    /// One appended entry.
    public struct Entry: Hashable, Sendable {
        public var id: LogEntryID
        public var hlc: HybridTimestamp
        public var text: String

        public init(id: LogEntryID, hlc: HybridTimestamp, text: String) {
            self.id = id
            self.hlc = hlc
            self.text = text
        }

        static func precedes(_ lhs: Entry, _ rhs: Entry) -> Bool { (lhs.hlc, lhs.id) < (rhs.hlc, rhs.id) }
    }

    /// Every entry, in (hlc, replica) order, redacted ones included.
    public private(set) var entries: [Entry]
    /// Entries hidden by a redaction, with the redaction that hid them.
    public private(set) var redactions: [LogEntryID: LogEntryID]

    public init(entries: [Entry] = [], redactions: [LogEntryID: LogEntryID] = [:]) {
        self.entries = entries.sorted(by: Entry.precedes)
        self.redactions = redactions
    }

    /// The entries a reader sees: every entry not redacted, in order.
    public var visibleEntries: [Entry] { entries.filter { redactions[$0.id] == nil } }

    /// Appends an entry; appending the same entry twice is a no-op.
    public mutating func append(_ entry: Entry) {
        guard !entries.contains(where: { $0.id == entry.id }) else { return }
        let position = entries.lastIndex { Entry.precedes($0, entry) }.map { $0 + 1 } ?? 0
        entries.insert(entry, at: position)
    }

    /// Hides `target`. When several redactions hide the same entry the smallest
    /// redaction ID is kept, so the outcome does not depend on arrival order.
    public mutating func redact(_ target: LogEntryID, by redaction: LogEntryID) {
        if let existing = redactions[target], existing <= redaction { return }
        redactions[target] = redaction
    }
}
