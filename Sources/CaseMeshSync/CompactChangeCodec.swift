public import CaseMeshCRDT

/// The wire form of changes inside `batch` messages: the canonical encoding with
/// every repeated string (case IDs, replica IDs, field paths, set elements) replaced
/// by an index into a table both ends build as the connection goes, and timestamps
/// sent as the difference from the previous change's.
///
/// A string is sent in full the first time (index 0 followed by the string) and as
/// `index + 1` afterwards, so a case ID costs its 31 bytes once per connection, not
/// once per change. The receiver rebuilds the same `Change` values the sender had,
/// and from them the canonical encoding the store keeps, so what is relayed is
/// exactly what the origin wrote.
///
/// Written by hand: the per-connection string table is what makes a change ~30 bytes
/// on the wire (most of it the value); general-purpose compression of each batch on
/// its own cannot share the table across batches.
public struct CompactChangeEncoder: Sendable {
    private var indices: [String: UInt64] = [:]
    private var lastPhysical: UInt64 = 0

    public init() {}

    private mutating func writeReference(_ text: String, into writer: inout BinaryWriter) {
        if let index = indices[text] {
            writer.writeVarint(index + 1)
        } else {
            indices[text] = UInt64(indices.count)
            writer.writeVarint(0)
            writer.writeString(text)
        }
    }

    public mutating func encode(_ change: Change, into writer: inout BinaryWriter) {
        writeReference(change.caseID.rawValue, into: &writer)
        writeReference(change.origin.rawValue, into: &writer)
        writer.writeVarint(change.seq)
        writer.writeSignedVarint(Int64(bitPattern: change.hlc.physical &- lastPhysical))
        lastPhysical = change.hlc.physical
        writer.writeVarint(UInt64(change.hlc.logical))
        writer.writeVarint(UInt64(change.context.sortedEntries.count))
        for entry in change.context.sortedEntries {
            writeReference(entry.origin.rawValue, into: &writer)
            writer.writeVarint(entry.seq)
        }
        writer.writeVarint(UInt64(change.ops.count))
        for op in change.ops {
            switch op {
            case .assign(let field, let value):
                writer.write(1)
                writeReference(field.storageKey, into: &writer)
                switch value {
                case .string(let text):
                    writer.write(1)
                    writer.writeString(text)
                case .integer(let number):
                    writer.write(2)
                    writer.writeSignedVarint(number)
                case .boolean(let flag):
                    writer.write(3)
                    writer.write(flag ? 1 : 0)
                }
            case .insert(let field, let element), .remove(let field, let element):
                if case .insert = op { writer.write(2) } else { writer.write(3) }
                writeReference(field.storageKey, into: &writer)
                writeReference(element, into: &writer)
            case .append(let field, let text):
                writer.write(4)
                writeReference(field.storageKey, into: &writer)
                writer.writeString(text)
            case .withheld(let field, let digest):
                writer.write(6)
                writeReference(field.storageKey, into: &writer)
                writer.write(bytes: digest)
            case .redact(let field, let target):
                writer.write(5)
                writeReference(field.storageKey, into: &writer)
                writeReference(target.dot.origin.rawValue, into: &writer)
                writer.writeVarint(target.dot.seq)
                writer.writeVarint(UInt64(target.index))
            }
        }
    }
}

/// Reads what ``CompactChangeEncoder`` wrote, validating every identifier the first
/// time it appears and every change's structure.
public struct CompactChangeDecoder: Sendable {
    private var strings: [String] = []
    private var caseIDs: [Int: CaseID] = [:]
    private var replicas: [Int: ReplicaID] = [:]
    private var fields: [Int: FieldKey] = [:]
    private var lastPhysical: UInt64 = 0

    private var stringBytes = 0

    /// The most distinct strings one connection may define.
    public static let maximumStrings = 4_000_000
    /// The most bytes those strings may hold together: the table lives as long as the
    /// connection, so a peer defining new long strings in every batch would otherwise
    /// grow this node's memory without end (identifiers and set elements of even a
    /// large consortium's log fit in a fraction of it).
    public static let maximumStringBytes = 64 << 20

    public init() {}

    private mutating func readIndex(_ reader: inout BinaryReader) throws(CRDTError) -> Int {
        let raw = try reader.readVarint()
        if raw == 0 {
            guard strings.count < Self.maximumStrings else { throw reader.failure("too many distinct strings") }
            let text = try reader.readString()
            stringBytes += text.utf8.count
            guard stringBytes <= Self.maximumStringBytes else {
                throw reader.failure("the connection's strings exceed \(Self.maximumStringBytes >> 20) MiB")
            }
            strings.append(text)
            return strings.count - 1
        }
        guard raw <= UInt64(strings.count) else { throw reader.failure("reference to undefined string \(raw - 1)") }
        return Int(raw - 1)
    }

    private mutating func readString(_ reader: inout BinaryReader) throws(CRDTError) -> String {
        strings[try readIndex(&reader)]
    }

    // An identifier that does not parse spoils its change, not the frame: the bytes
    // around it are still read (the layout does not depend on the text), so the
    // decoder notes the problem in `problem` and goes on to the next change.

    private mutating func readCaseID(_ reader: inout BinaryReader, _ problem: inout String?) throws(CRDTError)
        -> CaseID?
    {
        let index = try readIndex(&reader)
        if let known = caseIDs[index] { return known }
        do {
            let parsed = try CaseID(strings[index])
            caseIDs[index] = parsed
            return parsed
        } catch {
            problem = problem ?? error.message
            return nil
        }
    }

    private mutating func readReplica(_ reader: inout BinaryReader, _ problem: inout String?) throws(CRDTError)
        -> ReplicaID?
    {
        let index = try readIndex(&reader)
        if let known = replicas[index] { return known }
        do {
            let parsed = try ReplicaID(strings[index])
            replicas[index] = parsed
            return parsed
        } catch {
            problem = problem ?? error.message
            return nil
        }
    }

    private mutating func readField(_ reader: inout BinaryReader, _ problem: inout String?) throws(CRDTError)
        -> FieldKey?
    {
        let index = try readIndex(&reader)
        if let known = fields[index] { return known }
        do {
            let parsed = try FieldKey(parsing: strings[index])
            fields[index] = parsed
            return parsed
        } catch {
            problem = problem ?? error.message
            return nil
        }
    }

    /// Reads one change.
    ///
    /// - Throws: ``CRDTError`` when the bytes cannot be read, or when they read but do
    ///   not make a valid change (see ``decodeEntry(from:)`` to tell the two apart).
    public mutating func decode(from reader: inout BinaryReader) throws(CRDTError) -> Change {
        switch try decodeEntry(from: &reader) {
        case .change(let change): return change
        case .refused(let refused): throw CRDTError(code: .invalidChange, message: refused.reason)
        }
    }

    /// One change read from a batch: valid, or well-formed bytes that do not make a
    /// valid change (an identifier that does not parse, a structure the change rules
    /// refuse). The second kind is refused alone; the reader is past it.
    public enum Entry: Sendable {
        case change(Change)
        case refused(RefusedChange)
    }

    /// Reads one change; throws only when the bytes themselves cannot be read (then
    /// nothing after them can be either).
    public mutating func decodeEntry(from reader: inout BinaryReader) throws(CRDTError) -> Entry {
        var problem: String?
        let caseID = try readCaseID(&reader, &problem)
        let origin = try readReplica(&reader, &problem)
        let seq = try reader.readNumber("sequence number")
        let delta = try reader.readSignedVarint()
        let physical = lastPhysical &+ UInt64(bitPattern: delta)
        guard physical <= BinaryReader.maximumNumber else { throw reader.failure("timestamp \(physical) out of range") }
        lastPhysical = physical
        let logical = try reader.readVarint()
        guard logical <= UInt64(UInt32.max) else { throw reader.failure("logical clock exceeds 32 bits") }
        var context = VersionVector()
        var previous: ReplicaID?
        for _ in 0..<(try reader.readCount(limit: 100_000, "context size")) {
            let replica = try readReplica(&reader, &problem)
            let entrySeq = try reader.readNumber("context sequence number")
            guard let replica else { continue }
            if !(previous.map({ $0 < replica }) ?? true) || entrySeq == 0 {
                problem = problem ?? "context entries must be sorted, unique and positive"
            }
            previous = replica
            context[replica] = entrySeq
        }
        let count = try reader.readCount(limit: Change.maximumOperations, "operation count")
        var ops: [FieldOperation] = []
        ops.reserveCapacity(count)
        for _ in 0..<count {
            let tag = try reader.readByte()
            let field = try readField(&reader, &problem)
            let op: (FieldKey) -> FieldOperation
            switch tag {
            case 1:
                let valueTag = try reader.readByte()
                let value: Value
                switch valueTag {
                case 1: value = .string(try reader.readString())
                case 2: value = .integer(try reader.readSignedVarint())
                case 3:
                    let byte = try reader.readByte()
                    guard byte <= 1 else { throw reader.failure("boolean byte \(byte)") }
                    value = .boolean(byte == 1)
                default: throw reader.failure("unknown value tag \(valueTag)")
                }
                op = { .assign($0, value) }
            case 2:
                let element = try readString(&reader)
                op = { .insert($0, element) }
            case 3:
                let element = try readString(&reader)
                op = { .remove($0, element) }
            case 4:
                let text = try reader.readString()
                op = { .append($0, text) }
            case 5:
                let targetOrigin = try readReplica(&reader, &problem)
                let targetSeq = try reader.readNumber("sequence number")
                let index = try reader.readCount(limit: Change.maximumOperations, "log entry index")
                guard targetSeq > 0 else { throw reader.failure("sequence number 0") }
                guard let targetOrigin else { continue }
                let target = LogEntryID(dot: Dot(origin: targetOrigin, seq: targetSeq), index: UInt32(index))
                op = { .redact($0, target) }
            case 6:
                let digest = try reader.readBytes(32)
                op = { .withheld($0, digest: digest) }
            default: throw reader.failure("unknown operation tag \(tag)")
            }
            if let field { ops.append(op(field)) }
        }
        let label =
            "\(caseID?.rawValue ?? "(unreadable case ID)") \(origin?.rawValue ?? "(unreadable replica ID)"):\(seq)"
        guard let caseID, let origin, problem == nil else {
            return .refused(RefusedChange(label: label, reason: problem ?? "unreadable change"))
        }
        let change = Change(
            caseID: caseID, origin: origin, seq: seq,
            hlc: HybridTimestamp(physical: physical, logical: UInt32(logical)),
            context: context, ops: ops)
        do {
            try change.validateStructure()
        } catch {
            return .refused(RefusedChange(label: label, reason: error.message))
        }
        return .change(change)
    }
}

/// A change of a batch that was read but refused before reaching the store: its
/// identifiers as far as they could be read, and why.
public struct RefusedChange: Hashable, Sendable {
    /// "CASE ORIGIN:SEQ", with a placeholder for an identifier that did not parse.
    public var label: String
    public var reason: String

    public init(label: String, reason: String) {
        self.label = label
        self.reason = reason
    }
}
