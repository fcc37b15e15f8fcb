import CaseMeshCRDT

/// One row of the change log: consecutive changes in arrival order.
///
/// Encoding: for each change, its `caseRecord.id` and origin `replica.id` as varints,
/// then its canonical encoding less the head (case ID and origin) as a
/// length-prefixed blob. The canonical bytes are rebuilt exactly on the way out, so
/// what a relay forwards is what the origin wrote.
struct ChangeLogSegment {
    /// One stored change.
    struct Entry {
        var caseRef: Int64
        var replicaRef: Int64
        var rest: [UInt8]

        /// Whether this is what is left of a purged change: its case, no origin, no bytes.
        /// It keeps its place so arrival numbers (peers' cursors) stay valid.
        var isBlank: Bool { replicaRef == 0 }

        static func blank(caseRef: Int64) -> Entry { Entry(caseRef: caseRef, replicaRef: 0, rest: []) }
    }

    /// Segments close at about this many bytes, so a row stays a modest blob.
    static let targetBytes = 256 * 1024

    private(set) var writer = BinaryWriter(capacity: targetBytes + 4096)
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }
    var isFull: Bool { writer.bytes.count >= Self.targetBytes }

    /// Appends a change given its canonical encoding.
    mutating func append(caseRef: Int64, replicaRef: Int64, canonical: [UInt8]) throws(CRDTError) {
        let headerLength = try Change.headerLength(ofEncoded: canonical)
        writer.writeVarint(UInt64(bitPattern: caseRef))
        writer.writeVarint(UInt64(bitPattern: replicaRef))
        writer.writeVarint(UInt64(canonical.count - headerLength))
        writer.write(bytes: canonical[headerLength...])
        count += 1
    }

    /// Appends a stored entry as it is.
    mutating func append(_ entry: Entry) {
        writer.writeVarint(UInt64(bitPattern: entry.caseRef))
        writer.writeVarint(UInt64(bitPattern: entry.replicaRef))
        writer.writeVarint(UInt64(entry.rest.count))
        writer.write(bytes: entry.rest)
        count += 1
    }

    mutating func reset() {
        writer = BinaryWriter(capacity: Self.targetBytes + 4096)
        count = 0
    }

    /// Reads a stored segment.
    ///
    /// - Throws: ``CRDTError`` with code `malformedEncoding`.
    static func entries(of bytes: [UInt8]) throws(CRDTError) -> [Entry] {
        var reader = BinaryReader(bytes)
        var entries: [Entry] = []
        while !reader.isAtEnd {
            let caseRef = Int64(bitPattern: try reader.readVarint())
            let replicaRef = Int64(bitPattern: try reader.readVarint())
            entries.append(Entry(caseRef: caseRef, replicaRef: replicaRef, rest: try reader.readBlob()))
        }
        return entries
    }
}
