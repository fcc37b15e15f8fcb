public import Foundation
import SwiftASN1
public import X509

/// A certificate revocation list (RFC 5280 §5) issued by the consortium CA.
///
/// Written by hand on swift-asn1 because neither NIOSSL nor swift-certificates
/// exposes CRLs; only what the node needs is read: the issuer's signature, the
/// validity window and the revoked serial numbers.
public struct RevocationList: Sendable {
    /// Serial numbers of revoked certificates (big-endian bytes, leading zeros dropped).
    public let revokedSerials: Set<[UInt8]>
    public let thisUpdate: Date
    public let nextUpdate: Date?

    /// Parses a PEM CRL and checks that `issuer` signed it.
    ///
    /// - Throws: ``NetError`` `badCredentials` when it does not parse or the signature
    ///   does not verify.
    public init(pem: String, issuer: Certificate) throws(NetError) {
        func fail(_ reason: String) -> NetError { NetError(code: .badCredentials, message: "CRL: \(reason)") }
        let document: PEMDocument
        do {
            document = try PEMDocument(pemString: pem)
        } catch {
            throw fail("not a PEM document")
        }
        guard document.discriminator == "X509 CRL" else {
            throw fail("expected an X509 CRL, found \(document.discriminator)")
        }
        let der = document.derBytes
        do {
            let root = try DER.parse(der)
            guard case .constructed(let top) = root.content else { throw fail("not a sequence") }
            var parts = top.makeIterator()
            guard let tbs = parts.next(), let algorithm = parts.next(), let signatureNode = parts.next() else {
                throw fail("incomplete CertificateList")
            }
            guard case .constructed(let algorithmFields) = algorithm.content,
                let oidNode = algorithmFields.first(where: { _ in true })
            else { throw fail("malformed signature algorithm") }
            let algorithmOID = try ASN1ObjectIdentifier(derEncoded: oidNode)
            let signature = try ASN1BitString(derEncoded: signatureNode)
            let signatureAlgorithm: Certificate.SignatureAlgorithm
            switch algorithmOID {
            case [1, 2, 840, 10045, 4, 3, 2]: signatureAlgorithm = .ecdsaWithSHA256
            case [1, 2, 840, 10045, 4, 3, 3]: signatureAlgorithm = .ecdsaWithSHA384
            case [1, 2, 840, 113_549, 1, 1, 11]: signatureAlgorithm = .sha256WithRSAEncryption
            default: throw fail("unsupported signature algorithm \(algorithmOID)")
            }
            guard
                issuer.publicKey.isValidSignature(
                    Array(signature.bytes), for: Array(tbs.encodedBytes), signatureAlgorithm: signatureAlgorithm)
            else { throw fail("signature does not verify against the CA certificate") }
            guard case .constructed(let fields) = tbs.content else { throw fail("TBSCertList is not a sequence") }
            var iterator = fields.makeIterator()
            var field = iterator.next()
            if let version = field, version.identifier == .integer { field = iterator.next() }
            _ = field  // signature algorithm
            _ = iterator.next()  // issuer name
            guard let thisUpdateNode = iterator.next() else { throw fail("no thisUpdate") }
            thisUpdate = try Self.time(thisUpdateNode)
            var next = iterator.next()
            if let node = next, node.identifier == .utcTime || node.identifier == .generalizedTime {
                nextUpdate = try Self.time(node)
                next = iterator.next()
            } else {
                nextUpdate = nil
            }
            var serials: Set<[UInt8]> = []
            if let list = next, list.identifier == .sequence, case .constructed(let entries) = list.content {
                for entry in entries {
                    guard case .constructed(let entryFields) = entry.content,
                        let serial = entryFields.first(where: { _ in true }),
                        case .primitive(let bytes) = serial.content
                    else { throw fail("malformed revoked certificate entry") }
                    serials.insert(Self.normalized(bytes))
                }
            }
            revokedSerials = serials
        } catch let error as NetError {
            throw error
        } catch {
            throw fail("malformed DER (\(error))")
        }
    }

    private static func time(_ node: ASN1Node) throws -> Date {
        var components = DateComponents()
        components.timeZone = TimeZone(identifier: "UTC")
        if node.identifier == .utcTime {
            let time = try UTCTime(derEncoded: node)
            components.year = time.year
            components.month = time.month
            components.day = time.day
            components.hour = time.hours
            components.minute = time.minutes
            components.second = time.seconds
        } else {
            let time = try GeneralizedTime(derEncoded: node)
            components.year = time.year
            components.month = time.month
            components.day = time.day
            components.hour = time.hours
            components.minute = time.minutes
            components.second = time.seconds
        }
        guard let date = Calendar(identifier: .gregorian).date(from: components) else {
            throw NetError(code: .badCredentials, message: "CRL: impossible date")
        }
        return date
    }

    /// Whether `certificate` is on the list.
    public func isRevoked(_ certificate: Certificate) -> Bool {
        revokedSerials.contains(Self.normalized(certificate.serialNumber.bytes))
    }

    /// Serial numbers without the sign byte DER adds before a high first bit, so the
    /// CRL's INTEGER and the certificate's serial compare equal.
    static func normalized(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        Array(bytes.drop { $0 == 0 })
    }
}
