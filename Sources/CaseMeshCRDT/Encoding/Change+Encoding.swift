extension Change {
    /// The change's canonical binary encoding (see the sync protocol article).
    public func encoded() -> [UInt8] {
        var writer = BinaryWriter(capacity: 96)
        encode(into: &writer)
        return writer.bytes
    }

    /// Appends the canonical binary encoding to `writer`.
    public func encode(into writer: inout BinaryWriter) {
        encodeHead(into: &writer)
        for op in ops { op.encode(into: &writer) }
    }

    /// The canonical encoding up to the operations (case, origin, seq, HLC, context,
    /// operation count): with each operation's digest, what a seal's leaf covers.
    public func encodedHead() -> [UInt8] {
        var writer = BinaryWriter(capacity: 96)
        encodeHead(into: &writer)
        return writer.bytes
    }

    private func encodeHead(into writer: inout BinaryWriter) {
        writer.writeString(caseID.rawValue)
        writer.writeString(origin.rawValue)
        writer.writeVarint(seq)
        writer.writeVarint(hlc.physical)
        writer.writeVarint(UInt64(hlc.logical))
        let contextEntries = context.sortedEntries
        writer.writeVarint(UInt64(contextEntries.count))
        for entry in contextEntries {
            writer.writeString(entry.origin.rawValue)
            writer.writeVarint(entry.seq)
        }
        writer.writeVarint(UInt64(ops.count))
    }

    /// The length of the canonical encoding's header (the case ID and the origin),
    /// which a store that keeps both in columns need not store again.
    ///
    /// - Throws: ``CRDTError`` with code `malformedEncoding`.
    public static func headerLength(ofEncoded bytes: [UInt8]) throws(CRDTError) -> Int {
        var reader = BinaryReader(bytes)
        try reader.skipBlob()
        try reader.skipBlob()
        return reader.offset
    }

    /// Rebuilds the canonical encoding from its header fields and the rest of it.
    public static func encoded(caseID: String, origin: String, rest: [UInt8]) -> [UInt8] {
        var writer = BinaryWriter(capacity: rest.count + caseID.utf8.count + origin.utf8.count + 4)
        writer.writeString(caseID)
        writer.writeString(origin)
        writer.write(bytes: rest)
        return writer.bytes
    }

    /// Decodes a change and checks its structure.
    ///
    /// - Throws: ``CRDTError`` (`malformedEncoding`, `invalidIdentifier`, `invalidFieldKey` or
    ///   `invalidChange`) for any malformed input.
    public init(decoding bytes: [UInt8]) throws(CRDTError) {
        var reader = BinaryReader(bytes)
        try self.init(from: &reader)
        try reader.expectEnd()
    }

    /// Decodes one change from `reader` and checks its structure.
    public init(from reader: inout BinaryReader) throws(CRDTError) {
        let caseID = try CaseID(reader.readString())
        let origin = try ReplicaID(reader.readString())
        try self.init(caseID: caseID, origin: origin, restFrom: &reader)
    }

    /// Decodes the rest of a canonical encoding whose head (case ID and origin) is
    /// already known, as a store that keeps the head in columns does.
    ///
    /// - Throws: ``CRDTError`` for anything malformed.
    public init(
        caseID: CaseID, origin: ReplicaID, decodingRest bytes: [UInt8], fieldKeys: FieldKeyCache? = nil
    ) throws(CRDTError) {
        var reader = BinaryReader(bytes)
        reader.fieldKeys = fieldKeys
        try self.init(caseID: caseID, origin: origin, restFrom: &reader)
        try reader.expectEnd()
    }

    private init(caseID: CaseID, origin: ReplicaID, restFrom reader: inout BinaryReader) throws(CRDTError) {
        let seq = try reader.readNumber("sequence number")
        let physical = try reader.readNumber("timestamp")
        let logicalRaw = try reader.readVarint()
        guard logicalRaw <= UInt64(UInt32.max) else { throw reader.failure("logical clock exceeds 32 bits") }
        let contextCount = try reader.readCount(limit: 100_000, "context size")
        var context = VersionVector()
        var previous: ReplicaID?
        for _ in 0..<contextCount {
            let replica = try ReplicaID(reader.readString())
            let entrySeq = try reader.readNumber("context sequence number")
            guard previous.map({ $0 < replica }) ?? true, entrySeq > 0 else {
                throw reader.failure("context entries must be sorted, unique and positive")
            }
            previous = replica
            context[replica] = entrySeq
        }
        let opCount = try reader.readCount(limit: Change.maximumOperations, "operation count")
        var ops: [FieldOperation] = []
        ops.reserveCapacity(opCount)
        for _ in 0..<opCount { ops.append(try FieldOperation(from: &reader)) }
        self.init(
            caseID: caseID, origin: origin, seq: seq,
            hlc: HybridTimestamp(physical: physical, logical: UInt32(logicalRaw)),
            context: context, ops: ops)
        try validateStructure()
    }
}

extension FieldOperation {
    private enum Tag: UInt8 {
        case assign = 1, insert, remove, append, redact, withheld
    }

    func encode(into writer: inout BinaryWriter) {
        switch self {
        case .assign(let field, let value):
            writer.write(Tag.assign.rawValue)
            writer.writeString(field.storageKey)
            value.encode(into: &writer)
        case .insert(let field, let element):
            writer.write(Tag.insert.rawValue)
            writer.writeString(field.storageKey)
            writer.writeString(element)
        case .remove(let field, let element):
            writer.write(Tag.remove.rawValue)
            writer.writeString(field.storageKey)
            writer.writeString(element)
        case .append(let field, let text):
            writer.write(Tag.append.rawValue)
            writer.writeString(field.storageKey)
            writer.writeString(text)
        case .redact(let field, let target):
            writer.write(Tag.redact.rawValue)
            writer.writeString(field.storageKey)
            // Names never fail to encode.
            try? target.encode(into: &writer)
        case .withheld(let field, let digest):
            writer.write(Tag.withheld.rawValue)
            writer.writeString(field.storageKey)
            writer.write(bytes: digest)
        }
    }

    init(from reader: inout BinaryReader) throws(CRDTError) {
        let rawTag = try reader.readByte()
        guard let tag = Tag(rawValue: rawTag) else { throw reader.failure("unknown operation tag \(rawTag)") }
        let text = try reader.readString()
        let field: FieldKey
        if let cache = reader.fieldKeys { field = try cache.key(text) } else { field = try FieldKey(parsing: text) }
        switch tag {
        case .assign: self = .assign(field, try Value(from: &reader))
        case .insert: self = .insert(field, try reader.readString())
        case .remove: self = .remove(field, try reader.readString())
        case .append: self = .append(field, try reader.readString())
        case .redact: self = .redact(field, try LogEntryID(from: &reader))
        case .withheld: self = .withheld(field, digest: try reader.readBytes(32))
        }
    }
}

extension Value {
    private enum Tag: UInt8 {
        case string = 1, integer, boolean
    }

    func encode(into writer: inout BinaryWriter) {
        switch self {
        case .string(let text):
            writer.write(Tag.string.rawValue)
            writer.writeString(text)
        case .integer(let number):
            writer.write(Tag.integer.rawValue)
            writer.writeSignedVarint(number)
        case .boolean(let flag):
            writer.write(Tag.boolean.rawValue)
            writer.write(flag ? 1 : 0)
        }
    }

    init(from reader: inout BinaryReader) throws(CRDTError) {
        let rawTag = try reader.readByte()
        switch Tag(rawValue: rawTag) {
        case .string: self = .string(try reader.readString())
        case .integer: self = .integer(try reader.readSignedVarint())
        case .boolean:
            let byte = try reader.readByte()
            guard byte <= 1 else { throw reader.failure("boolean byte \(byte)") }
            self = .boolean(byte == 1)
        case nil: throw reader.failure("unknown value tag \(rawTag)")
        }
    }
}

extension Dot {
    func encode(into writer: inout BinaryWriter, coder: some ReplicaCoder = ReplicaNameCoder()) throws(CRDTError) {
        try coder.write(origin, into: &writer)
        writer.writeVarint(seq)
    }

    init(from reader: inout BinaryReader, coder: some ReplicaCoder = ReplicaNameCoder()) throws(CRDTError) {
        let origin = try coder.read(from: &reader)
        let seq = try reader.readNumber("sequence number")
        guard seq > 0 else { throw reader.failure("sequence number 0") }
        self.init(origin: origin, seq: seq)
    }
}

extension LogEntryID {
    func encode(into writer: inout BinaryWriter, coder: some ReplicaCoder = ReplicaNameCoder()) throws(CRDTError) {
        try dot.encode(into: &writer, coder: coder)
        writer.writeVarint(UInt64(index))
    }

    init(from reader: inout BinaryReader, coder: some ReplicaCoder = ReplicaNameCoder()) throws(CRDTError) {
        let dot = try Dot(from: &reader, coder: coder)
        let index = try reader.readCount(limit: Change.maximumOperations, "log entry index")
        self.init(dot: dot, index: UInt32(index))
    }
}
