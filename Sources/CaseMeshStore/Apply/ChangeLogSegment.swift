import CaseMeshCRDT

/// One row of the change log: consecutive changes in arrival order.
///
/// Encoding (format 2, written since signed changes): a 0 byte, then for each change
/// its `caseRecord.id`, its origin's `replica.id`, the `seal.id` of the seal that
/// authenticates it (0 while none does), its leaf index in that seal, and its
/// canonical encoding less the head (case ID and origin) as a length-prefixed blob.
/// Format 1 (the first release) has no leading 0 and no seal fields; a case ID is
/// never 0, so the first byte tells them apart. The canonical bytes are rebuilt
/// exactly on the way out, so what a relay forwards is what the origin wrote.
struct ChangeLogSegment {
    /// One stored change.
    struct Entry {
        var caseRef: Int64
        var replicaRef: Int64
        var rest: [UInt8]
        /// The seal that authenticates the change (`seal.id`), 0 while none does.
        var sealRef: Int64 = 0
        /// The change's position among the seal's digests.
        var leaf: Int = 0

        /// Whether this is what is left of a purged change: its case, no origin, no bytes.
        /// It keeps its place so arrival numbers (peers' cursors) stay valid.
        var isBlank: Bool { replicaRef == 0 }

        static func blank(caseRef: Int64) -> Entry { Entry(caseRef: caseRef, replicaRef: 0, rest: []) }
    }

    /// Segments close at about this many bytes, so a row stays a modest blob.
    static let targetBytes = 256 * 1024

    private(set) var writer = ChangeLogSegment.newWriter()
    private(set) var count = 0

    private static func newWriter() -> BinaryWriter {
        var writer = BinaryWriter(capacity: targetBytes + 4096)
        writer.write(0)
        return writer
    }

    var isEmpty: Bool { count == 0 }
    var isFull: Bool { writer.bytes.count >= Self.targetBytes }

    /// Appends a change given its canonical encoding.
    mutating func append(
        caseRef: Int64, replicaRef: Int64, canonical: [UInt8], sealRef: Int64 = 0, leaf: Int = 0
    ) throws(CRDTError) {
        let headerLength = try Change.headerLength(ofEncoded: canonical)
        writer.writeVarint(UInt64(bitPattern: caseRef))
        writer.writeVarint(UInt64(bitPattern: replicaRef))
        writer.writeVarint(UInt64(bitPattern: sealRef))
        writer.writeVarint(UInt64(leaf))
        writer.writeVarint(UInt64(canonical.count - headerLength))
        writer.write(bytes: canonical[headerLength...])
        count += 1
    }

    /// Appends a stored entry as it is.
    mutating func append(_ entry: Entry) {
        writer.writeVarint(UInt64(bitPattern: entry.caseRef))
        writer.writeVarint(UInt64(bitPattern: entry.replicaRef))
        writer.writeVarint(UInt64(bitPattern: entry.sealRef))
        writer.writeVarint(UInt64(entry.leaf))
        writer.writeVarint(UInt64(entry.rest.count))
        writer.write(bytes: entry.rest)
        count += 1
    }

    mutating func reset() {
        writer = Self.newWriter()
        count = 0
    }

    /// Reads a stored segment, in either format.
    ///
    /// - Throws: ``CRDTError`` with code `malformedEncoding`.
    /// SQL selecting `columns` of the segments holding arrivals from `arrival` (an
    /// SQL expression, a parameter say) on, in log order. It starts from the
    /// segment holding that arrival by the arrival index: a condition on
    /// `firstArrival + changeCount` alone would scan every segment of the log.
    static func segments(from arrival: String, columns: String) -> String {
        """
        SELECT \(columns) FROM changeSegment
        WHERE firstArrival >= COALESCE(
            (SELECT firstArrival FROM changeSegment WHERE firstArrival <= \(arrival)
             ORDER BY firstArrival DESC LIMIT 1), 0)
        AND firstArrival + changeCount > \(arrival) ORDER BY firstArrival
        """
    }

    static func entries(of bytes: [UInt8]) throws(CRDTError) -> [Entry] {
        var reader = BinaryReader(bytes)
        let sealed = bytes.first == 0
        if sealed { _ = try reader.readByte() }
        var entries: [Entry] = []
        while !reader.isAtEnd {
            let caseRef = Int64(bitPattern: try reader.readVarint())
            let replicaRef = Int64(bitPattern: try reader.readVarint())
            var sealRef: Int64 = 0
            var leaf = 0
            if sealed {
                sealRef = Int64(bitPattern: try reader.readVarint())
                leaf = Int(try reader.readCount(limit: Seal.maximumLeaves, "leaf index"))
            }
            entries.append(
                Entry(
                    caseRef: caseRef, replicaRef: replicaRef, rest: try reader.readBlob(), sealRef: sealRef, leaf: leaf)
            )
        }
        return entries
    }
}
