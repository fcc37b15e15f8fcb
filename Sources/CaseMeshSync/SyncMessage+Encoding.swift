public import CaseMeshCRDT

extension SyncMessage {
    private enum Tag: UInt8 {
        case hello = 1, pull, batch, ack, done, refusal
    }

    /// The largest frame either side accepts: 8 MiB.
    public static let maximumFrameBytes = 8 << 20

    /// The message's payload (type byte and fields) on a fresh connection.
    public func encoded() -> [UInt8] {
        var changes = CompactChangeEncoder()
        return encoded(changes: &changes)
    }

    /// The message's payload (type byte and fields), without the frame length; the
    /// changes of a batch go through the connection's ``CompactChangeEncoder``.
    public func encoded(changes encoder: inout CompactChangeEncoder) -> [UInt8] {
        var writer = BinaryWriter(capacity: 64)
        switch self {
        case .hello(let hello):
            writer.write(Tag.hello.rawValue)
            writer.writeVarint(hello.protocolVersion)
            writer.writeVarint(hello.schemaVersion)
            writer.writeString(hello.replica.rawValue)
            writer.writeString(hello.logIdentity)
        case .pull(let pull):
            writer.write(Tag.pull.rawValue)
            writer.writeString(pull.logIdentity)
            writer.writeVarint(pull.cursor)
        case .batch(let batch):
            writer.write(Tag.batch.rawValue)
            writer.writeString(batch.logIdentity)
            writer.writeVarint(batch.nextCursor)
            writer.write(batch.isFinal ? 1 : 0)
            writer.writeVarint(UInt64(batch.changes.count))
            for change in batch.changes { encoder.encode(change, into: &writer) }
        case .ack(let ack):
            writer.write(Tag.ack.rawValue)
            writer.writeVarint(ack.cursor)
        case .done:
            writer.write(Tag.done.rawValue)
        case .refusal(let refusal):
            writer.write(Tag.refusal.rawValue)
            writer.writeString(String(refusal.reason.prefix(500)))
        }
        return writer.bytes
    }

    /// Decodes a frame's payload on a fresh connection.
    ///
    /// - Throws: ``CRDTError`` for anything malformed.
    public init(decoding bytes: [UInt8]) throws(CRDTError) {
        var changes = CompactChangeDecoder()
        try self.init(decoding: bytes, changes: &changes)
    }

    /// Decodes a frame's payload; a batch's changes go through the connection's
    /// ``CompactChangeDecoder``.
    ///
    /// - Throws: ``CRDTError`` for anything malformed (bytes, identifiers, change structure).
    public init(decoding bytes: [UInt8], changes decoder: inout CompactChangeDecoder) throws(CRDTError) {
        var reader = BinaryReader(bytes)
        let rawTag = try reader.readByte()
        switch Tag(rawValue: rawTag) {
        case .hello:
            let protocolVersion = try reader.readVarint()
            let schemaVersion = try reader.readVarint()
            let replica = try ReplicaID(reader.readString())
            let logIdentity = try Self.readLogIdentity(&reader)
            self = .hello(
                Hello(
                    protocolVersion: protocolVersion, schemaVersion: schemaVersion, replica: replica,
                    logIdentity: logIdentity))
        case .pull:
            let logIdentity = try Self.readLogIdentity(&reader)
            self = .pull(Pull(logIdentity: logIdentity, cursor: try reader.readVarint()))
        case .batch:
            let logIdentity = try Self.readLogIdentity(&reader)
            let nextCursor = try reader.readVarint()
            let finalByte = try reader.readByte()
            guard finalByte <= 1 else { throw reader.failure("final flag \(finalByte)") }
            let count = try reader.readCount(limit: 1 << 20, "change count")
            var changes: [Change] = []
            changes.reserveCapacity(min(count, 65_536))
            for _ in 0..<count { changes.append(try decoder.decode(from: &reader)) }
            self = .batch(
                Batch(logIdentity: logIdentity, changes: changes, nextCursor: nextCursor, isFinal: finalByte == 1))
        case .ack:
            self = .ack(Ack(cursor: try reader.readVarint()))
        case .done:
            self = .done
        case .refusal:
            self = .refusal(Refusal(reason: try reader.readString()))
        case nil:
            throw reader.failure("unknown message type \(rawTag)")
        }
        try reader.expectEnd()
    }

    private static func readLogIdentity(_ reader: inout BinaryReader) throws(CRDTError) -> String {
        let text = try reader.readString()
        guard text.utf8.count <= 64 else { throw reader.failure("log identity longer than 64 bytes") }
        return text
    }
}
