/// Appends the compact binary encoding CaseMesh uses for changes and field state:
/// LEB128 varints, length-prefixed UTF-8 strings, tagged values.
///
/// Written by hand because no package on the mirror offers a compact schema-less
/// binary codec without a code generator (swift-protobuf needs its plugin built,
/// which costs minutes on every CI run); the format is small and specified in the
/// sync protocol article.
public struct BinaryWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func write(_ byte: UInt8) { bytes.append(byte) }

    public mutating func write(bytes other: some Sequence<UInt8>) { bytes.append(contentsOf: other) }

    /// Writes an unsigned LEB128 varint.
    public mutating func writeVarint(_ value: UInt64) {
        var remaining = value
        while remaining >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining >>= 7
        }
        bytes.append(UInt8(remaining))
    }

    /// Writes a signed integer with zig-zag encoding.
    public mutating func writeSignedVarint(_ value: Int64) {
        writeVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    /// Writes a length-prefixed UTF-8 string.
    public mutating func writeString(_ text: String) {
        var text = text
        text.withUTF8 { buffer in
            writeVarint(UInt64(buffer.count))
            bytes.append(contentsOf: buffer)
        }
    }

    /// Writes a length-prefixed byte string.
    public mutating func writeBlob(_ blob: [UInt8]) {
        writeVarint(UInt64(blob.count))
        bytes.append(contentsOf: blob)
    }
}
