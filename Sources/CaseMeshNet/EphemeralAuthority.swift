public import CaseMeshCRDT
import Crypto
import Foundation
import SwiftASN1
import X509

/// A throwaway consortium CA made in memory, for the demo and the benchmarks: the
/// same certificate profile as `certs/casemesh-ca` (ECDSA P-256, the replica ID as a
/// `casemesh://replica/` SAN URI), written as PEM files into a directory.
///
/// Real consortia use `certs/casemesh-ca`, whose keys live on the CA's machine.
public struct EphemeralAuthority: Sendable {
    public let directory: String
    public let certificatePath: String
    private let key: Certificate.PrivateKey
    private let certificate: Certificate

    /// Creates the CA in `directory`.
    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let signingKey = P256.Signing.PrivateKey()
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
