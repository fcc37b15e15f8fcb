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
        case .withheld: .register(RegisterState())
        }
    }

    /// Whether `op` fits this field's merge kind.
    public func accepts(_ op: FieldOperation) -> Bool {
        switch (op, self) {
        case (.assign, .register), (.insert, .set), (.remove, .set), (.append, .log), (.redact, .log): true
        case (.withheld, _): true
        default: false
        }
    }

    /// Applies operation `index` of `change` to this field.
    ///
    /// The change's own dot counts as seen by its later operations, so a change that
    /// adds and then removes an element leaves it removed.
    ///
    /// - Throws: ``CRDTError`` with code `invalidChange` when the operation does not fit
    ///   the field's merge kind; the state is unchanged then.
    public mutating func apply(
        _ op: FieldOperation, index: Int, of change: Change, semantics: SetSemantics
    ) throws(CRDTError) {
        guard accepts(op) else {
            throw CRDTError(
                code: .invalidChange,
                message: "change \(change.caseID) \(change.dot): operation does not fit field \(op.field)")
        }
        // Each case takes the payload out and puts a cheap empty state in its place
        // first, so the payload is uniquely referenced and mutates without a copy.
        let dot = change.dot
        switch (op, self) {
        case (.assign(_, let value), .register(var state)):
            self = .register(RegisterState())
            state.assign(value, hlc: change.hlc, dot: dot, context: change.context)
            self = .register(state)
        case (.insert(_, let element), .set(var state)):
            self = .set(SetState())
            state.insert(element, dot: dot, context: change.context, semantics: semantics)
            self = .set(state)
        case (.remove(_, let element), .set(var state)):
            self = .set(SetState())
            state.remove(element, dot: dot, context: change.context, semantics: semantics)
            self = .set(state)
        case (.append(_, let text), .log(var state)):
            self = .log(LogState())
            state.append(.init(id: LogEntryID(dot: dot, index: UInt32(index)), hlc: change.hlc, text: text))
            self = .log(state)
        case (.redact(_, let target), .log(var state)):
            self = .log(LogState())
            state.redact(target, by: LogEntryID(dot: dot, index: UInt32(index)))
            self = .log(state)
        default:
            break
        }
    }

    /// Whether this is a register holding concurrent values.
    public var isConflict: Bool {
        if case .register(let register) = self { return register.isConflict }
        return false
    }
}

extension FieldState {
    private enum Tag: UInt8 {
        case register = 1, set, log
    }

    /// The canonical binary encoding, compared between replicas.
    public func encoded() -> [UInt8] {
        // Replica names always encode.
        (try? encoded(coder: ReplicaNameCoder())) ?? []
    }

    /// The binary encoding with replica IDs written by `coder`.
    ///
    /// - Throws: what `coder` throws when it cannot write a replica.
    public func encoded(coder: some ReplicaCoder) throws(CRDTError) -> [UInt8] {
        var writer = BinaryWriter(capacity: 48)
        switch self {
        case .register(let state):
            writer.write(Tag.register.rawValue)
            writer.writeVarint(UInt64(state.siblings.count))
            for sibling in state.siblings {
                sibling.value.encode(into: &writer)
                writer.writeVarint(sibling.hlc.physical)
                writer.writeVarint(UInt64(sibling.hlc.logical))
                try sibling.dot.encode(into: &writer, coder: coder)
            }
        case .set(let state):
            writer.write(Tag.set.rawValue)
            for tags in [state.additions, state.removals] {
                writer.writeVarint(UInt64(tags.count))
                for tag in tags {
                    writer.writeString(tag.element)
                    try tag.dot.encode(into: &writer, coder: coder)
                }
            }
        case .log(let state):
            writer.write(Tag.log.rawValue)
            writer.writeVarint(UInt64(state.entries.count))
            for entry in state.entries {
                try entry.id.encode(into: &writer, coder: coder)
                writer.writeVarint(entry.hlc.physical)
                writer.writeVarint(UInt64(entry.hlc.logical))
                writer.writeString(entry.text)
            }
            let redactions = state.redactions.sorted { $0.key < $1.key }
            writer.writeVarint(UInt64(redactions.count))
            for (target, redaction) in redactions {
                try target.encode(into: &writer, coder: coder)
                try redaction.encode(into: &writer, coder: coder)
            }
        }
        return writer.bytes
    }

    /// Decodes a field state in the canonical encoding.
    ///
    /// - Throws: ``CRDTError`` with code `malformedEncoding`.
    public init(decoding bytes: [UInt8]) throws(CRDTError) {
        try self.init(decoding: bytes, coder: ReplicaNameCoder())
    }

    /// Decodes a field state whose replica IDs were written by `coder`.
    ///
    /// - Throws: ``CRDTError`` with code `malformedEncoding`.
    public init(decoding bytes: [UInt8], coder: some ReplicaCoder) throws(CRDTError) {
        var reader = BinaryReader(bytes)
        let rawTag = try reader.readByte()
        let limit = 1 << 20
        switch Tag(rawValue: rawTag) {
        case .register:
            var siblings: [RegisterState.Sibling] = []
            for _ in 0..<(try reader.readCount(limit: limit, "sibling count")) {
                let value = try Value(from: &reader)
                let hlc = try Self.readTimestamp(&reader)
                siblings.append(.init(value: value, hlc: hlc, dot: try Dot(from: &reader, coder: coder)))
            }
            self = .register(RegisterState(siblings: siblings))
        case .set:
            var lists: [[SetState.Tag]] = []
            for _ in 0..<2 {
                var tags: [SetState.Tag] = []
                for _ in 0..<(try reader.readCount(limit: limit, "set size")) {
                    let element = try reader.readString()
                    tags.append(.init(element: element, dot: try Dot(from: &reader, coder: coder)))
                }
                lists.append(tags)
            }
            self = .set(SetState(additions: lists[0], removals: lists[1]))
        case .log:
            var entries: [LogState.Entry] = []
            for _ in 0..<(try reader.readCount(limit: limit, "log size")) {
                let id = try LogEntryID(from: &reader, coder: coder)
                let hlc = try Self.readTimestamp(&reader)
                entries.append(.init(id: id, hlc: hlc, text: try reader.readString()))
            }
            var redactions: [LogEntryID: LogEntryID] = [:]
            for _ in 0..<(try reader.readCount(limit: limit, "redaction count")) {
                let target = try LogEntryID(from: &reader, coder: coder)
                redactions[target] = try LogEntryID(from: &reader, coder: coder)
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
