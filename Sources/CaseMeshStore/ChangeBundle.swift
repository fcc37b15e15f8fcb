public import CaseMeshCRDT
import Crypto

/// A file of changes carried between replicas with no network (a USB stick).
///
/// Layout (format 2): the magic line `CASEMESH-BUNDLE\n`, then varints for the
/// format version, the schema version, the creation time, a string for the source
/// replica and one for the institution it was made for (empty for all), the change
/// count, each change as a length-prefixed blob, each change's seal and leaf, the
/// seals, the signers' certificates (replica ID and DER), and finally the SHA-256 of
/// everything before it.
///
/// The checksum catches truncation and corruption; authenticity comes from the
/// seals, which the importer verifies as a sync receiver does (a bundle is a relay
/// on a USB stick). Format 1 bundles carried no seals and are refused.
public struct ChangeBundle: Sendable {
    public static let magic = Array("CASEMESH-BUNDLE\n".utf8)
    public static let formatVersion: UInt64 = 2

    public var schemaVersion: Int
    public var source: ReplicaID
    public var recipient: InstitutionID?
    public var createdAtMillis: UInt64
    /// The encoded changes, in causal order.
    public var changes: [[UInt8]]
    /// For each change, where it sits in ``seals`` (`nil`: not sealed).
    public var leaves: [SealLeaf?]
    public var seals: [Seal]
    /// The certificates (DER) of the seals' signers.
    public var certificates: [ReplicaID: [UInt8]]

    public init(
        schemaVersion: Int, source: ReplicaID, recipient: InstitutionID?, createdAtMillis: UInt64, changes: [[UInt8]],
        leaves: [SealLeaf?] = [], seals: [Seal] = [], certificates: [ReplicaID: [UInt8]] = [:]
    ) {
        self.leaves = leaves
        self.seals = seals
        self.certificates = certificates
        self.schemaVersion = schemaVersion
        self.source = source
        self.recipient = recipient
        self.createdAtMillis = createdAtMillis
        self.changes = changes
    }

    /// The bundle's file bytes.
    public func encoded() -> [UInt8] {
        var writer = BinaryWriter(capacity: 64 + changes.reduce(0) { $0 + $1.count + 3 })
        writer.write(bytes: Self.magic)
        writer.writeVarint(Self.formatVersion)
        writer.writeVarint(UInt64(schemaVersion))
        writer.writeVarint(createdAtMillis)
        writer.writeString(source.rawValue)
        writer.writeString(recipient?.rawValue ?? "")
        writer.writeVarint(UInt64(changes.count))
        for change in changes { writer.writeBlob(change) }
        Seal.encode(leaves: leaves, count: changes.count, into: &writer)
        writer.writeVarint(UInt64(seals.count))
        for seal in seals { seal.encode(into: &writer) }
        writer.writeVarint(UInt64(certificates.count))
        for (replica, certificate) in certificates.sorted(by: { $0.key < $1.key }) {
            writer.writeString(replica.rawValue)
            writer.writeBlob(certificate)
        }
        let digest = SHA256.hash(data: writer.bytes)
        writer.write(bytes: digest)
        return writer.bytes
    }

    /// Reads a bundle file, checking its magic, checksum and versions.
    ///
    /// The changes inside are returned undecoded: each is decoded and checked on its
    /// own, so one bad change does not spoil the others.
    ///
    /// - Throws: ``StoreError`` `corrupt`.
    public init(decoding bytes: [UInt8]) throws(StoreError) {
        guard bytes.count >= Self.magic.count + 32, bytes.starts(with: Self.magic) else {
            throw StoreError(code: .corrupt, message: "not a CaseMesh change bundle")
        }
        let body = Array(bytes.dropLast(32))
        guard Array(SHA256.hash(data: body)) == Array(bytes.suffix(32)) else {
            throw StoreError(code: .corrupt, message: "the bundle is truncated or corrupted (checksum mismatch)")
        }
        do {
            var reader = BinaryReader(body)
            for _ in Self.magic { _ = try reader.readByte() }
            let format = try reader.readVarint()
            guard format == Self.formatVersion else {
                throw StoreError(
                    code: .corrupt, message: "bundle format \(format) is not supported (expected \(Self.formatVersion))"
                )
            }
            // Any case schema version: changes to fields this replica's schema lacks
            // are held until it upgrades (CaseStore+Upgrade.swift).
            let schemaVersion = try reader.readVarint()
            guard (1...UInt64(Int32.max)).contains(schemaVersion) else {
                throw StoreError(code: .corrupt, message: "the bundle names case schema version \(schemaVersion)")
            }
            self.schemaVersion = Int(schemaVersion)
            createdAtMillis = try reader.readNumber("creation time")
            source = try ReplicaID(reader.readString())
            let recipientText = try reader.readString()
            recipient = recipientText.isEmpty ? nil : try InstitutionID(recipientText)
            let count = try reader.readCount(limit: 100_000_000, "change count")
            var changes: [[UInt8]] = []
            changes.reserveCapacity(min(count, 1 << 20))
            for _ in 0..<count { changes.append(try reader.readBlob()) }
            leaves = try Seal.decodeLeaves(count: count, from: &reader)
            var seals: [Seal] = []
            for _ in 0..<(try reader.readCount(limit: 1 << 20, "seal count")) { seals.append(try Seal(from: &reader)) }
            guard leaves.allSatisfy({ $0.map { $0.seal < seals.count } ?? true }) else {
                throw StoreError(code: .corrupt, message: "the bundle names a seal it does not carry")
            }
            self.seals = seals
            var certificates: [ReplicaID: [UInt8]] = [:]
            for _ in 0..<(try reader.readCount(limit: 10_000, "certificate count")) {
                let replica = try ReplicaID(reader.readString())
                certificates[replica] = try reader.readBlob()
            }
            self.certificates = certificates
            try reader.expectEnd()
            self.changes = changes
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(code: .corrupt, message: "the bundle is malformed: \(error)")
        }
    }
}
