/// An origin node's signature over a run of its own changes (authenticity,
/// DESIGN.md property 6).
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
