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
            Seal.encode(leaves: batch.leaves, count: batch.changes.count, into: &writer)
            writer.writeVarint(UInt64(batch.seals.count))
            for seal in batch.seals { seal.encode(into: &writer) }
            writer.writeVarint(UInt64(batch.certificates.count))
            for (replica, certificate) in batch.certificates.sorted(by: { $0.key < $1.key }) {
                writer.writeString(replica.rawValue)
                writer.writeBlob(certificate)
            }
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
            self = .pull(Pull(logIdentity: logIdentity, cursor: try reader.readNumber("pull cursor")))
        case .batch:
            let logIdentity = try Self.readLogIdentity(&reader)
            let nextCursor = try reader.readNumber("next cursor")
            let finalByte = try reader.readByte()
            guard finalByte <= 1 else { throw reader.failure("final flag \(finalByte)") }
            let count = try reader.readCount(limit: 1 << 20, "change count")
            var changes: [Change] = []
            changes.reserveCapacity(min(count, 65_536))
            var refused: [RefusedChange] = []
            var kept: [Int] = []
            for index in 0..<count {
                switch try decoder.decodeEntry(from: &reader) {
                case .change(let change):
                    changes.append(change)
                    kept.append(index)
                case .refused(let change): refused.append(change)
                }
            }
            var leaves = try Seal.decodeLeaves(count: count, from: &reader)
            var seals: [Seal] = []
            for _ in 0..<(try reader.readCount(limit: 1 << 20, "seal count")) { seals.append(try Seal(from: &reader)) }
            guard leaves.allSatisfy({ $0.map { $0.seal < seals.count } ?? true }) else {
                throw reader.failure("a change names a seal the batch does not carry")
            }
            // The leaves of refused changes go with them.
            if !refused.isEmpty, !leaves.isEmpty { leaves = kept.map { leaves[$0] } }
            // No seal at all reads as no leaves, as a batch built without them.
            if leaves.allSatisfy({ $0 == nil }) { leaves = [] }
            var certificates: [ReplicaID: [UInt8]] = [:]
            for _ in 0..<(try reader.readCount(limit: 10_000, "certificate count")) {
                let replica = try ReplicaID(reader.readString())
                let certificate = try reader.readBlob()
                guard certificate.count <= 16_384 else {
                    throw reader.failure("a certificate of \(certificate.count) bytes")
                }
                certificates[replica] = certificate
            }
            self = .batch(
                Batch(
                    logIdentity: logIdentity, changes: changes, nextCursor: nextCursor, isFinal: finalByte == 1,
                    leaves: leaves, seals: seals, certificates: certificates, refused: refused))
        case .ack:
            self = .ack(Ack(cursor: try reader.readNumber("ack cursor")))
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
