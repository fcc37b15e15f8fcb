public import CaseMeshCRDT
import Crypto
public import Foundation
public import NIOSSL
public import X509

/// What a node needs for mutual TLS: its certificate and key, the consortium CA and
/// (optionally) the CA's revocation list, all from PEM files.
public struct NodeCredentials: Sendable {
    public let certificateChain: [NIOSSLCertificate]
    public let privateKey: NIOSSLPrivateKey
    public let authority: Certificate
    public let authorityNIO: NIOSSLCertificate
    public let revocationListPath: String?
    /// The replica ID in this node's own certificate.
    public let replicaID: ReplicaID
    /// The certificate's key, for signing this node's changes (see ``sign(_:)``).
    private let signingKey: P256.Signing.PrivateKey
    /// This node's certificate (DER), sent with its seals.
    public let certificateDER: [UInt8]
    /// When this node's certificate stops being valid.
    public let certificateNotAfter: Date

    /// Loads and checks the files.
    ///
    /// - Throws: ``NetError`` `badCredentials` naming the file that failed.
    public init(certificate: String, key: String, authority: String, revocationList: String?) throws(NetError) {
        func read(_ path: String, _ what: String) throws(NetError) -> String {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw NetError(code: .badCredentials, message: "cannot read the \(what) \(path)")
            }
            return text
        }
        let certificatePEM = try read(certificate, "certificate")
        let keyPEM = try read(key, "private key")
        let authorityPEM = try read(authority, "CA certificate")
        do {
            certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
            privateKey = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
            authorityNIO = try NIOSSLCertificate(bytes: Array(authorityPEM.utf8), format: .pem)
        } catch {
            throw NetError(code: .badCredentials, message: "cannot load the TLS credentials: \(error)")
        }
        do {
            self.authority = try Certificate(pemEncoded: authorityPEM)
        } catch {
            throw NetError(code: .badCredentials, message: "cannot parse the CA certificate \(authority): \(error)")
        }
        guard let leafPEM = certificateChain.first, let leaf = try? Certificate(derEncoded: try leafPEM.toDERBytes())
        else {
            throw NetError(code: .badCredentials, message: "no certificate in \(certificate)")
        }
        replicaID = try PeerVerifier.replicaID(of: leaf)
        certificateDER = (try? leafPEM.toDERBytes()) ?? []
        certificateNotAfter = leaf.notValidAfter
        do {
            signingKey = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        } catch {
            throw NetError(code: .badCredentials, message: "the key \(key) is not an ECDSA P-256 key: \(error)")
        }
        guard signingKey.publicKey.rawRepresentation == P256.Signing.PublicKey(leaf.publicKey)?.rawRepresentation
        else {
            throw NetError(
                code: .badCredentials, message: "the key \(key) does not belong to the certificate \(certificate)")
        }
        revocationListPath = revocationList
        if let revocationList { _ = try PeerVerifier.loadRevocationList(revocationList, issuer: self.authority) }
    }

    /// Signs a seal's message (ECDSA P-256 with SHA-256; raw r ‖ s).
    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        Array(try signingKey.signature(for: message).rawRepresentation)
    }

    /// This node's raw P-256 public key.
    public var publicKeyRaw: [UInt8] { Array(signingKey.publicKey.rawRepresentation) }
}
