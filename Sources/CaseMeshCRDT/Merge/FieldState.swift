/// The merged state of one field, whatever its merge kind.
public enum FieldState: Hashable, Sendable {
    case register(RegisterState)
    case set(SetState)
    case log(LogState)

    /// The empty state a field of this operation's kind starts from.
    public static func empty(for op: FieldOperation) -> FieldState {
        switch op {
        case .assign: .register(RegisterState())
        case .insert, .remove: .set(SetState())
        case .append, .redact: .log(LogState())
        }
    }

    /// Applies operation `index` of `change` to this field.
    ///
    /// The change's own dot counts as seen by its later operations, so a change that
    /// adds and then removes an element leaves it removed.
    ///
    /// - Throws: ``CRDTError`` with code `invalidChange` when the operation does not fit
    ///   the field's merge kind.
    public mutating func apply(
        _ op: FieldOperation, index: Int, of change: Change, semantics: SetSemantics
    ) throws(CRDTError) {
        let dot = change.dot
        switch (op, self) {
        case (.assign(_, let value), .register(var state)):
            state.assign(value, hlc: change.hlc, dot: dot, context: change.context)
            self = .register(state)
        case (.insert(_, let element), .set(var state)):
            state.insert(element, dot: dot, context: change.context, semantics: semantics)
            self = .set(state)
        case (.remove(_, let element), .set(var state)):
            state.remove(element, dot: dot, context: change.context, semantics: semantics)
            self = .set(state)
        case (.append(_, let text), .log(var state)):
            state.append(.init(id: LogEntryID(dot: dot, index: UInt32(index)), hlc: change.hlc, text: text))
            self = .log(state)
        case (.redact(_, let target), .log(var state)):
            state.redact(target, by: LogEntryID(dot: dot, index: UInt32(index)))
            self = .log(state)
        default:
            throw CRDTError(
                code: .invalidChange, message: "change \(change.caseID) \(dot): operation does not fit field \(op.field)")
        }
    }
}

extension FieldState {
    private enum Tag: UInt8 {
        case register = 1, set, log
    }

    /// The canonical binary encoding, as stored and compared between replicas.
    public func encoded() -> [UInt8] {
        var writer = BinaryWriter(capacity: 48)
        switch self {
        case .register(let state):
            writer.write(Tag.register.rawValue)
            writer.writeVarint(UInt64(state.siblings.count))
            for sibling in state.siblings {
                sibling.value.encode(into: &writer)
                writer.writeVarint(sibling.hlc.physical)
                writer.writeVarint(UInt64(sibling.hlc.logical))
                sibling.dot.encode(into: &writer)
            }
        case .set(let state):
            writer.write(Tag.set.rawValue)
            for tags in [state.additions, state.removals] {
                writer.writeVarint(UInt64(tags.count))
                for tag in tags {
                    writer.writeString(tag.element)
                    tag.dot.encode(into: &writer)
                }
            }
        case .log(let state):
            writer.write(Tag.log.rawValue)
            writer.writeVarint(UInt64(state.entries.count))
            for entry in state.entries {
                entry.id.encode(into: &writer)
                writer.writeVarint(entry.hlc.physical)
                writer.writeVarint(UInt64(entry.hlc.logical))
                writer.writeString(entry.text)
            }
            let redactions = state.redactions.sorted { $0.key < $1.key }
            writer.writeVarint(UInt64(redactions.count))
            for (target, redaction) in redactions {
                target.encode(into: &writer)
                redaction.encode(into: &writer)
            }
        }
        return writer.bytes
    }

    /// Decodes a stored field state.
    ///
    /// - Throws: ``CRDTError`` with code `malformedEncoding`.
    public init(decoding bytes: [UInt8]) throws(CRDTError) {
        var reader = BinaryReader(bytes)
        let rawTag = try reader.readByte()
        let limit = 1 << 20
        switch Tag(rawValue: rawTag) {
        case .register:
            var siblings: [RegisterState.Sibling] = []
            for _ in 0..<(try reader.readCount(limit: limit, "sibling count")) {
                let value = try Value(from: &reader)
                let hlc = try Self.readTimestamp(&reader)
                siblings.append(.init(value: value, hlc: hlc, dot: try Dot(from: &reader)))
            }
            self = .register(RegisterState(siblings: siblings))
        case .set:
            var lists: [[SetState.Tag]] = []
            for _ in 0..<2 {
                var tags: [SetState.Tag] = []
                for _ in 0..<(try reader.readCount(limit: limit, "set size")) {
                    let element = try reader.readString()
                    tags.append(.init(element: element, dot: try Dot(from: &reader)))
                }
                lists.append(tags)
            }
            self = .set(SetState(additions: lists[0], removals: lists[1]))
        case .log:
            var entries: [LogState.Entry] = []
            for _ in 0..<(try reader.readCount(limit: limit, "log size")) {
                let id = try LogEntryID(from: &reader)
                let hlc = try Self.readTimestamp(&reader)
                entries.append(.init(id: id, hlc: hlc, text: try reader.readString()))
            }
            var redactions: [LogEntryID: LogEntryID] = [:]
            for _ in 0..<(try reader.readCount(limit: limit, "redaction count")) {
                let target = try LogEntryID(from: &reader)
                redactions[target] = try LogEntryID(from: &reader)
            }
            self = .log(LogState(entries: entries, redactions: redactions))
        case nil:
            throw reader.failure("unknown field state tag \(rawTag)")
        }
        try reader.expectEnd()
    }

    private static func readTimestamp(_ reader: inout BinaryReader) throws(CRDTError) -> HybridTimestamp {
        let physical = try reader.readVarint()
        let logical = try reader.readVarint()
        guard logical <= UInt64(UInt32.max) else { throw reader.failure("logical clock exceeds 32 bits") }
        return HybridTimestamp(physical: physical, logical: UInt32(logical))
    }
}
