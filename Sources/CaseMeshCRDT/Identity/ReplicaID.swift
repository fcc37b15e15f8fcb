/// The stable identity of one node: `institution/node`, for example
/// `dongducheon.jungang-dong/server` or `uijeongbu.mental-health/laptop-3`.
///
/// The part before `/` is the ``InstitutionID``; every node of an institution shares
/// what that institution is entitled to.
///
/// - Important: Both parts use lowercase ASCII letters, digits, `.`, `-` and `_` only,
///   at most 64 characters each, so an identifier can be embedded in certificates,
///   file names and log lines without escaping.
public struct ReplicaID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The full identifier, `institution/node`.
    public let rawValue: String

    /// Parses and validates a replica identifier.
    ///
    /// - Throws: ``CRDTError`` with code `invalidIdentifier` when the text is not of the form
    ///   `institution/node`.
    public init(_ text: String) throws(CRDTError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, Self.isValidPart(parts[0]), Self.isValidPart(parts[1]) else {
            throw CRDTError(
                code: .invalidIdentifier,
                message: "invalid replica ID '\(text.prefix(80))': expected institution/node using a-z 0-9 . - _"
            )
        }
        rawValue = text
    }

    /// The institution this node belongs to.
    public var institution: InstitutionID { InstitutionID(unchecked: String(rawValue.prefix { $0 != "/" })) }

    public var description: String { rawValue }

    public static func < (lhs: ReplicaID, rhs: ReplicaID) -> Bool { lhs.rawValue < rhs.rawValue }

    static func isValidPart(_ part: Substring) -> Bool {
        guard !part.isEmpty, part.utf8.count <= 64 else { return false }
        return part.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
    }
}

/// An institution taking part in joint case management, such as
/// `dongducheon.jungang-dong` (a dong administrative welfare centre).
public struct InstitutionID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: String

    /// Parses and validates an institution identifier.
    ///
    /// - Throws: ``CRDTError`` with code `invalidIdentifier`.
    public init(_ text: String) throws(CRDTError) {
        guard ReplicaID.isValidPart(Substring(text)) else {
            throw CRDTError(
                code: .invalidIdentifier,
                message: "invalid institution ID '\(text.prefix(80))': use a-z 0-9 . - _ (at most 64)"
            )
        }
        rawValue = text
    }

    init(unchecked text: String) { rawValue = text }

    public var description: String { rawValue }

    public static func < (lhs: InstitutionID, rhs: InstitutionID) -> Bool { lhs.rawValue < rhs.rawValue }
}
