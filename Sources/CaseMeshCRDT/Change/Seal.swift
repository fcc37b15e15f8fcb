/// An origin node's signature over a run of its own changes (authenticity,
/// property 6 of the Architecture article in CaseMeshNode.docc).
///
/// The origin seals its changes in the order it logged them, at most
/// ``maximumLeaves`` at a time: the signature (ECDSA P-256 with the key of the
/// origin's certificate) covers the origin, the seal's number and one digest per
/// change, in order (the leaves: see `SealDigest` in CaseMeshStore). A receiver that gets
/// some of the changes recomputes their digests, takes the others' from the seal,
/// and verifies the signature; a relay passes the seal on unchanged, so it cannot
/// alter a change or forge one without the origin's key.
///
/// On the wire a seal carries the digests of the leaves whose changes do not travel
/// with it (a receiver entitled to only some of the origin's cases); in storage it
/// keeps all of them, to prove any subset later.
public struct Seal: Hashable, Sendable {
    public var origin: ReplicaID
    /// The origin's seal number: 1, 2, 3, …
    public var number: UInt64
    public var leafCount: Int
    /// The raw ECDSA P-256 signature (r ‖ s, 64 bytes).
    public var signature: [UInt8]
    /// Leaf digests (32 bytes each) known without the changes, by leaf index.
    public var digests: [Int: [UInt8]]

    /// The most changes one seal covers.
    public static let maximumLeaves = 4096
    public static let digestLength = 32

    public init(origin: ReplicaID, number: UInt64, leafCount: Int, signature: [UInt8], digests: [Int: [UInt8]]) {
        self.origin = origin
        self.number = number
        self.leafCount = leafCount
        self.signature = signature
        self.digests = digests
    }

    /// What the signature covers, given every leaf digest in order.
    public static func message(origin: ReplicaID, number: UInt64, leaves: [[UInt8]]) -> [UInt8] {
        var writer = BinaryWriter(capacity: 64 + leaves.count * digestLength)
        writer.write(bytes: Array("casemesh seal v1".utf8))
        writer.writeString(origin.rawValue)
        writer.writeVarint(number)
        writer.writeVarint(UInt64(leaves.count))
        for leaf in leaves { writer.write(bytes: leaf) }
        return writer.bytes
    }
}

/// Where a change sits in a seal carried by the same message.
public struct SealLeaf: Hashable, Sendable {
    /// The index of the seal in the message's seals.
    public var seal: Int
    /// The change's leaf index in that seal.
    public var leaf: Int

    public init(seal: Int, leaf: Int) {
        self.seal = seal
        self.leaf = leaf
    }
}

extension Seal {
    /// Appends the seal's encoding (as batches and bundles carry it).
    public func encode(into writer: inout BinaryWriter) {
        writer.writeString(origin.rawValue)
        writer.writeVarint(number)
        writer.writeVarint(UInt64(leafCount))
        writer.writeBlob(signature)
        writer.writeVarint(UInt64(digests.count))
        for (leaf, digest) in digests.sorted(by: { $0.key < $1.key }) {
            writer.writeVarint(UInt64(leaf))
            writer.write(bytes: digest)
        }
    }

    /// Reads what ``encode(into:)`` wrote.
    ///
    /// - Throws: ``CRDTError`` for anything malformed.
    public init(from reader: inout BinaryReader) throws(CRDTError) {
        let origin = try ReplicaID(reader.readString())
        let number = try reader.readNumber("seal number")
        let leafCount = try reader.readCount(limit: Seal.maximumLeaves, "seal size")
        let signature = try reader.readBlob()
        guard signature.count <= 128 else { throw reader.failure("a signature of \(signature.count) bytes") }
        var digests: [Int: [UInt8]] = [:]
        for _ in 0..<(try reader.readCount(limit: leafCount, "seal digests")) {
            let leaf = try reader.readCount(limit: max(0, leafCount - 1), "leaf index")
            digests[leaf] = try reader.readBytes(Seal.digestLength)
        }
        self.init(origin: origin, number: number, leafCount: leafCount, signature: signature, digests: digests)
    }

    /// Appends, for each of `count` changes, its seal and leaf (or none).
    public static func encode(leaves: [SealLeaf?], count: Int, into writer: inout BinaryWriter) {
        for index in 0..<count {
            if let leaf = leaves.indices.contains(index) ? leaves[index] : nil {
                writer.writeVarint(UInt64(leaf.seal) + 1)
                writer.writeVarint(UInt64(leaf.leaf))
            } else {
                writer.writeVarint(0)
            }
        }
    }

    /// Reads what ``encode(leaves:count:into:)`` wrote.
    public static func decodeLeaves(count: Int, from reader: inout BinaryReader) throws(CRDTError) -> [SealLeaf?] {
        var leaves: [SealLeaf?] = []
        leaves.reserveCapacity(count)
        for _ in 0..<count {
            let seal = try reader.readCount(limit: 1 << 20, "seal index")
            if seal == 0 {
                leaves.append(nil)
            } else {
                leaves.append(
                    SealLeaf(seal: seal - 1, leaf: try reader.readCount(limit: maximumLeaves - 1, "leaf index")))
            }
        }
        return leaves
    }
}
