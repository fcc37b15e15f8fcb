/// How replica IDs are written inside field-state encodings.
///
/// The canonical encoding (``ReplicaNameCoder``) writes the full name and is what
/// replicas compare. A store may intern replica IDs as small numbers in what it keeps
/// on disk, which makes every stored field state a few dozen bytes smaller.
public protocol ReplicaCoder {
    func write(_ replica: ReplicaID, into writer: inout BinaryWriter) throws(CRDTError)
    func read(from reader: inout BinaryReader) throws(CRDTError) -> ReplicaID
}

/// Writes replica IDs as length-prefixed names: the canonical form.
public struct ReplicaNameCoder: ReplicaCoder {
    public init() {}

    public func write(_ replica: ReplicaID, into writer: inout BinaryWriter) { writer.writeString(replica.rawValue) }

    public func read(from reader: inout BinaryReader) throws(CRDTError) -> ReplicaID {
        try ReplicaID(reader.readString())
    }
}
