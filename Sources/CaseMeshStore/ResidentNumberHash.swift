import Crypto
import Foundation

/// The keyed hash that stands for a resident registration number (주민등록번호) in
/// case records: HMAC-SHA-256 under a secret the consortium shares out of band,
/// written as 64 hex digits into `person#ID.rrnHash`.
///
/// The number never leaves the node in clear and is never stored: two institutions
/// that serve the same person compute the same hash and can tell, while someone
/// who reads the records without the secret cannot recover the number, not even
/// by trying every possible one (the key makes that search useless).
public struct ResidentNumberHasher: Sendable {
    private let key: SymmetricKey

    /// The shortest consortium secret accepted, in bytes.
    public static let minimumSecretBytes = 32

    /// - Throws: ``StoreError`` `invalidWrite` when the secret is too short.
    public init(secret: [UInt8]) throws(StoreError) {
        guard secret.count >= Self.minimumSecretBytes else {
            throw StoreError(
                code: .invalidWrite,
                message:
                    "the consortium secret has \(secret.count) bytes; at least \(Self.minimumSecretBytes) are needed")
        }
        key = SymmetricKey(data: secret)
    }

    /// Reads the consortium secret from a file (its bytes, surrounding whitespace removed).
    public init(secretFile path: String) throws(StoreError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StoreError(code: .invalidWrite, message: "cannot read the consortium secret file \(path)")
        }
        let trimmed = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        try self.init(secret: Array(trimmed.utf8))
    }

    /// The hash of a resident registration number given as `YYMMDD-NNNNNNN` or 13 digits.
    ///
    /// - Throws: ``StoreError`` `invalidWrite` for anything that is not a well-formed number
    ///   (the message never repeats the number).
    public func hash(_ number: String) throws(StoreError) -> String {
        let digits = try Self.normalized(number)
        let code = HMAC<SHA256>.authenticationCode(for: Array(digits.utf8), using: key)
        return code.map { String(format: "%02x", $0) }.joined()
    }

    /// The 13 digits of a well-formed number: a real month and day, and a seventh
    /// digit that encodes century and sex (1–8, or 9 and 0 for births before 1900).
    static func normalized(_ number: String) throws(StoreError) -> String {
        let refused = StoreError(
            code: .invalidWrite, message: "not a resident registration number: expected YYMMDD-NNNNNNN (13 digits)")
        var text = number.trimmingCharacters(in: .whitespaces)
        if text.count == 14, text[text.index(text.startIndex, offsetBy: 6)] == "-" {
            text.remove(at: text.index(text.startIndex, offsetBy: 6))
        }
        let bytes = Array(text.utf8)
        guard bytes.count == 13, bytes.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw refused
        }
        let value = bytes.map { Int($0 - UInt8(ascii: "0")) }
        let month = value[2] * 10 + value[3]
        let day = value[4] * 10 + value[5]
        guard (1...12).contains(month), (1...31).contains(day) else { throw refused }
        return text
    }
}
