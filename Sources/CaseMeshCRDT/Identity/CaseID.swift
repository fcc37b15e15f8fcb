/// The identifier of a case, the unit of sharing: `case-` followed by 26 lowercase
/// base-32 characters (130 random bits).
public struct CaseID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: String

    private static let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz".utf8)

    /// Parses and validates a case identifier.
    ///
    /// - Throws: ``CRDTError`` with code `invalidIdentifier`.
    public init(_ text: String) throws(CRDTError) {
        let utf8 = Array(text.utf8)
        guard utf8.count == 31, text.hasPrefix("case-"), utf8[5...].allSatisfy(Self.alphabet.contains) else {
            throw CRDTError(
                code: .invalidIdentifier,
                message: "invalid case ID '\(text.prefix(80))': expected case- and 26 base-32 characters"
            )
        }
        rawValue = text
    }

    /// Makes a new random case identifier from the given generator.
    ///
    /// - Parameter generator: the source of randomness, injected so runs are reproducible.
    public static func random(using generator: inout some RandomNumberGenerator) -> CaseID {
        var characters: [UInt8] = Array("case-".utf8)
        for _ in 0..<26 {
            let random: UInt64 = generator.next()
            characters.append(alphabet[Int(random & 31)])
        }
        return CaseID(unchecked: String(decoding: characters, as: UTF8.self))
    }

    init(unchecked text: String) { rawValue = text }

    public var description: String { rawValue }

    public static func < (lhs: CaseID, rhs: CaseID) -> Bool { lhs.rawValue < rhs.rawValue }
}
