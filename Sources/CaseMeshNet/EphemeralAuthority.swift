public import CaseMeshCRDT
import Crypto
import Foundation
import SwiftASN1
import Synchronization
import X509

/// A throwaway consortium CA made in memory, for the demo, the benchmarks and the
/// simulator: the same certificate profile as `certs/casemesh-ca` (ECDSA P-256, the
/// replica ID as a `casemesh://replica/` SAN URI), written as PEM files into a
/// directory, with a signed revocation list (`crl.pem`) it can add to.
///
/// Real consortia use `certs/casemesh-ca`, whose keys live on the CA's machine.
public struct EphemeralAuthority: Sendable {
    public let directory: String
    public let certificatePath: String
    /// The CA's revocation list (PEM), empty until ``revoke(_:)``.
    public let revocationListPath: String
    private let signingKey: P256.Signing.PrivateKey
    private let key: Certificate.PrivateKey
    private let certificate: Certificate
    /// Serial numbers revoked so far, shared by copies of this value.
    private let revoked = RevokedSerials()

    private final class RevokedSerials: Sendable {
        let serials = Mutex<[Certificate.SerialNumber]>([])
    }

    /// Creates the CA in `directory`.
    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let signingKey = P256.Signing.PrivateKey()
        self.signingKey = signingKey
        key = Certificate.PrivateKey(signingKey)
        let name = try DistinguishedName { CommonName("CaseMesh demo consortium CA") }
        let now = Date()
        certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(86_400), issuer: name,
            subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            }, issuerPrivateKey: key)
        certificatePath = directory + "/ca.pem"
        try Self.write(try certificate.serializeAsPEM().pemString, to: certificatePath, private: false)
        revocationListPath = directory + "/crl.pem"
        try writeRevocationList()
    }

    /// Revokes the certificate in the PEM file at `certificatePath` and writes the
    /// new revocation list; verifiers that read ``revocationListPath`` see it at
    /// their next check.
    public func revoke(certificateAt path: String) throws {
        let revokedCertificate = try Certificate(pemEncoded: try String(contentsOfFile: path, encoding: .utf8))
        revoked.serials.withLock { $0.append(revokedCertificate.serialNumber) }
        try writeRevocationList()
    }

    /// Writes the CRL (RFC 5280 §5.1, version 2) of the serials revoked so far,
    /// valid for a day. Encoded by hand on swift-asn1 for the reason
    /// ``RevocationList`` is read by hand: swift-certificates has no CRL type.
    private func writeRevocationList() throws {
        let now = Date()
        let serials = revoked.serials.withLock { $0 }
        func time(_ date: Date) throws -> GeneralizedTime {
            let parts = Calendar(identifier: .gregorian).dateComponents(
                in: TimeZone(identifier: "UTC")!, from: date)
            return try GeneralizedTime(
                year: parts.year!, month: parts.month!, day: parts.day!, hours: parts.hour!, minutes: parts.minute!,
                seconds: parts.second!, fractionalSeconds: 0)
        }
        func algorithm(_ coder: inout DER.Serializer) throws {
            try coder.appendConstructedNode(identifier: .sequence) { coder in
                try coder.serialize(ASN1ObjectIdentifier(elements: [1, 2, 840, 10045, 4, 3, 2]))
            }
        }
        var tbs = DER.Serializer()
        try tbs.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(1)  // v2
            try algorithm(&coder)
            try coder.serialize(certificate.subject)
            try coder.serialize(try time(now.addingTimeInterval(-60)))
            try coder.serialize(try time(now.addingTimeInterval(86_400)))
            if !serials.isEmpty {
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    for serial in serials {
                        try coder.appendConstructedNode(identifier: .sequence) { coder in
                            // A DER INTEGER: no leading zeros, a zero before a high bit.
                            var bytes = Array(serial.bytes.drop { $0 == 0 })
                            if bytes.first.map({ $0 >= 0x80 }) ?? true { bytes.insert(0, at: 0) }
                            coder.appendPrimitiveNode(identifier: .integer) { $0.append(contentsOf: bytes) }
                            try coder.serialize(try time(now.addingTimeInterval(-60)))
                        }
                    }
                }
            }
        }
        let signature = try signingKey.signature(for: tbs.serializedBytes).derRepresentation
        var list = DER.Serializer()
        try list.appendConstructedNode(identifier: .sequence) { coder in
            coder.serializeRawBytes(tbs.serializedBytes)
            try algorithm(&coder)
            try coder.serialize(ASN1BitString(bytes: ArraySlice(signature)))
        }
        let pem = PEMDocument(type: "X509 CRL", derBytes: list.serializedBytes).pemString
        try Self.write(pem, to: revocationListPath, private: false)
    }

    /// Issues a node certificate; returns the certificate's and the key's paths.
    public func issue(_ replica: ReplicaID) throws -> (certificate: String, key: String) {
        let nodeKey = P256.Signing.PrivateKey()
        let now = Date()
        let nodeCertificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(nodeKey.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(86_400),
            issuer: certificate.subject, subject: try DistinguishedName { CommonName(replica.rawValue) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames([.uniformResourceIdentifier("casemesh://replica/\(replica.rawValue)")])
            }, issuerPrivateKey: key)
        let base = directory + "/" + replica.rawValue.replacingOccurrences(of: "/", with: "__")
        try Self.write(try nodeCertificate.serializeAsPEM().pemString, to: base + ".pem", private: false)
        try Self.write(nodeKey.pemRepresentation, to: base + ".key", private: true)
        return (base + ".pem", base + ".key")
    }

    private static func write(_ text: String, to path: String, private isPrivate: Bool) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        if isPrivate { try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path) }
    }
}
