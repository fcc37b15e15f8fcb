/// Reads what ``BinaryWriter`` wrote, checking every length and bound.
///
/// - Important: Input comes from peers and files: every read checks bounds and throws
///   ``CRDTError`` with code `malformedEncoding` instead of trapping.
public struct BinaryReader: ~Copyable {
    private let bytes: [UInt8]
    public private(set) var offset: Int
    private let end: Int

    /// The longest string or blob accepted (1 MiB).
    public static let maximumLength = 1 << 20

    /// Field names already parsed, for a reader of many changes in a row (a page of
    /// the change log): the same few dozen names recur in every change.
    public var fieldKeys: FieldKeyCache?

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        offset = 0
        end = bytes.count
    }

    public var isAtEnd: Bool { offset >= end }

    public var remainingCount: Int { end - offset }

    /// A `malformedEncoding` error naming the current offset.
    public func failure(_ what: String) -> CRDTError {
        CRDTError(code: .malformedEncoding, message: "malformed encoding at byte \(offset): \(what)")
    }

    public mutating func readByte() throws(CRDTError) -> UInt8 {
        guard offset < end else { throw failure("unexpected end of data") }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readVarint() throws(CRDTError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try readByte()
            if shift == 63 && byte > 1 { throw failure("varint overflows 64 bits") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw failure("varint longer than 10 bytes") }
        }
    }

    /// The largest number that may come from outside as a sequence number, a cursor,
    /// a seal number or a time: what SQLite's signed 64-bit integers hold.
    public static let maximumNumber = UInt64(Int64.max)

    /// Reads a varint that must not exceed ``maximumNumber`` (or `limit`): every
    /// number from outside that is stored or converted to a signed integer is
    /// range-checked here, where it is decoded, so no conversion later can trap.
    public mutating func readNumber(_ what: String, limit: UInt64 = maximumNumber) throws(CRDTError) -> UInt64 {
        let value = try readVarint()
        guard value <= limit else { throw failure("\(what) \(value) exceeds the limit of \(limit)") }
        return value
    }

    public mutating func readSignedVarint() throws(CRDTError) -> Int64 {
        let raw = try readVarint()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// Reads a varint that must fit `limit`.
    public mutating func readCount(limit: Int, _ what: String) throws(CRDTError) -> Int {
        let value = try readVarint()
        guard value <= UInt64(limit) else { throw failure("\(what) \(value) exceeds the limit of \(limit)") }
        return Int(value)
    }

    public mutating func readBlob() throws(CRDTError) -> [UInt8] {
        let count = try readCount(limit: Self.maximumLength, "length")
        guard count <= remainingCount else { throw failure("length \(count) runs past the end") }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// Reads exactly `count` raw bytes.
    public mutating func readBytes(_ count: Int) throws(CRDTError) -> [UInt8] {
        guard count <= remainingCount else { throw failure("\(count) bytes run past the end") }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// Skips a length-prefixed string or blob without reading it.
    public mutating func skipBlob() throws(CRDTError) {
        let count = try readCount(limit: Self.maximumLength, "length")
        guard count <= remainingCount else { throw failure("length \(count) runs past the end") }
        offset += count
    }

    public mutating func readString() throws(CRDTError) -> String {
        let count = try readCount(limit: Self.maximumLength, "string length")
        guard count <= remainingCount else { throw failure("string length \(count) runs past the end") }
        let slice = bytes[offset..<offset + count]
        guard let text = String(validating: slice, as: UTF8.self) else { throw failure("string is not valid UTF-8") }
        offset += count
        return text
    }

    public mutating func expectEnd() throws(CRDTError) {
        guard isAtEnd else { throw failure("\(remainingCount) unexpected trailing bytes") }
    }
}

/// Parsed field names by their text (see ``BinaryReader/fieldKeys``), at most
/// 10,000 of them; past that, names are parsed each time.
public final class FieldKeyCache {
    private var keys: [String: FieldKey] = [:]

    public init() {}

    func key(_ text: String) throws(CRDTError) -> FieldKey {
        if let known = keys[text] { return known }
        let parsed = try FieldKey(parsing: text)
        if keys.count < 10_000 { keys[text] = parsed }
        return parsed
    }
}
