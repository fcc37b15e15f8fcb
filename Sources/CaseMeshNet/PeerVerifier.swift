public import CaseMeshCRDT
import Crypto
public import Foundation
import NIOCore
public import NIOSSL
import Synchronization
@_spi(FixedExpiryValidationTime) public import X509

/// Decides whether a peer's certificate chain is trusted and which replica it names.
///
/// Used as NIOSSL's custom verification callback on both sides of every connection:
/// the chain must lead to the consortium CA (RFC 5280 path validation by
/// swift-certificates, validity dates included), the leaf must not be on the CA's
/// revocation list, and it must carry exactly one `casemesh://replica/<id>` SAN URI.
/// The peer's replica ID comes from here, never from a message.
public struct PeerVerifier: Sendable {
    /// The consortium CA.
    public let authority: Certificate
    /// The CA's revocation list (PEM), read at each verification so a new one takes effect.
    public let revocationListPath: String?
    /// The injected clock; certificates are judged at this time.
    public let now: @Sendable () -> Date
    /// The last CRL that loaded: a replacement file that does not load (half
    /// written, signed by another CA) is refused and this one stays in use, still
    /// only until its own next update.
    private let lastGood = LastGoodRevocationList()

    final class LastGoodRevocationList: Sendable {
        private let value = Mutex<(pem: String, list: RevocationList)?>(nil)

        func list(_ path: String, issuer: Certificate) throws(NetError) -> RevocationList {
            guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else {
                if let kept = value.withLock({ $0 }) { return kept.list }
                throw NetError(code: .badCredentials, message: "cannot read the CRL \(path)")
            }
            if let kept = value.withLock({ $0 }), kept.pem == pem { return kept.list }
            do {
                let list = try RevocationList(pem: pem, issuer: issuer)
                value.withLock { $0 = (pem, list) }
                return list
            } catch {
                if let kept = value.withLock({ $0 }) { return kept.list }
                throw error
            }
        }
    }

    public init(credentials: NodeCredentials, now: @escaping @Sendable () -> Date = { Date() }) {
        authority = credentials.authority
        revocationListPath = credentials.revocationListPath
        self.now = now
    }

    /// A verifier from the CA certificate and CRL files alone (for checking the
    /// signers of a bundle, with no connection of one's own).
    ///
    /// - Throws: ``NetError`` `badCredentials` naming the file that failed.
    public init(authorityFile: String, revocationList: String?) throws(NetError) {
        guard let text = try? String(contentsOfFile: authorityFile, encoding: .utf8),
            let authority = try? Certificate(pemEncoded: text)
        else { throw NetError(code: .badCredentials, message: "cannot read the CA certificate \(authorityFile)") }
        self.authority = authority
        if let revocationList { _ = try Self.loadRevocationList(revocationList, issuer: authority) }
        revocationListPath = revocationList
        now = { Date() }
    }

    /// The SAN URI prefix that carries a replica ID.
    public static let uriPrefix = "casemesh://replica/"

    /// The replica ID a certificate names.
    ///
    /// - Throws: ``NetError`` `untrustedPeer` when there is none, or more than one.
    public static func replicaID(of certificate: Certificate) throws(NetError) -> ReplicaID {
        var found: [String] = []
        if let names = try? certificate.extensions.subjectAlternativeNames {
            for name in names {
                if case .uniformResourceIdentifier(let uri) = name, uri.hasPrefix(uriPrefix) {
                    found.append(String(uri.dropFirst(uriPrefix.count)))
                }
            }
        }
        guard found.count == 1, let replica = try? ReplicaID(found[0]) else {
            throw NetError(
                code: .untrustedPeer,
                message: "the certificate names \(found.count) replicas; exactly one casemesh URI expected")
        }
        return replica
    }

    /// Reads and verifies a CRL file.
    ///
    /// - Throws: ``NetError`` `badCredentials` when it cannot be read, or the
    ///   reason it does not verify under `issuer`.
    public static func loadRevocationList(_ path: String, issuer: Certificate) throws(NetError) -> RevocationList {
        guard let pem = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw NetError(code: .badCredentials, message: "cannot read the CRL \(path)")
        }
        return try RevocationList(pem: pem, issuer: issuer)
    }

    /// Verifies a presented chain (leaf first) and returns the replica it names.
    ///
    /// - Throws: ``NetError`` `untrustedPeer` with the reason.
    public func verify(_ chain: [NIOSSLCertificate]) async throws(NetError) -> ReplicaID {
        func untrusted(_ reason: String) -> NetError { NetError(code: .untrustedPeer, message: reason) }
        guard let leafNIO = chain.first else { throw untrusted("the peer presented no certificate") }
        let leaf: Certificate
        let intermediates: [Certificate]
        do {
            leaf = try Certificate(derEncoded: try leafNIO.toDERBytes())
            intermediates = try chain.dropFirst().map { try Certificate(derEncoded: try $0.toDERBytes()) }
        } catch {
            throw untrusted("the peer's certificate does not parse")
        }
        return try await verify(leaf: leaf, intermediates: intermediates)
    }

    /// Verifies the certificate of a node whose seals arrived (through a relay,
    /// perhaps): the consortium CA, expiry, the CRL, and that it names `replica`.
    ///
    /// - Returns: its raw P-256 public key.
    /// - Throws: ``NetError`` `untrustedPeer` with the reason.
    public func verifySigner(_ replica: ReplicaID, certificate der: [UInt8]) async throws(NetError) -> [UInt8] {
        let leaf: Certificate
        do {
            leaf = try Certificate(derEncoded: der)
        } catch {
            throw NetError(code: .untrustedPeer, message: "the certificate of \(replica) does not parse", lasting: true)
        }
        let named = try await verify(leaf: leaf, intermediates: [])
        guard named == replica else {
            throw NetError(
                code: .untrustedPeer, message: "a certificate for \(named) was sent as \(replica)'s", lasting: true)
        }
        guard let key = P256.Signing.PublicKey(leaf.publicKey) else {
            throw NetError(
                code: .untrustedPeer, message: "the certificate of \(replica) has no P-256 key", lasting: true)
        }
        return Array(key.rawRepresentation)
    }

    private func verify(leaf: Certificate, intermediates: [Certificate]) async throws(NetError) -> ReplicaID {
        // Lasting: the certificate never verifies again, whatever the time or CRL.
        func untrusted(_ reason: String, lasting: Bool = true) -> NetError {
            NetError(code: .untrustedPeer, message: reason, lasting: lasting)
        }
        let time = now()
        var verifier = Verifier(rootCertificates: CertificateStore([authority])) {
            RFC5280Policy(fixedExpiryValidationTime: time)
        }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates))
        guard case .validCertificate = result else {
            if time > leaf.notValidAfter { throw untrusted("the peer's certificate expired at \(leaf.notValidAfter)") }
            if time < leaf.notValidBefore {
                throw untrusted("the peer's certificate is not valid before \(leaf.notValidBefore)", lasting: false)
            }
            throw untrusted("the peer's certificate was not issued by the consortium CA")
        }
        if let path = revocationListPath {
            let list = try lastGood.list(path, issuer: authority)
            if let nextUpdate = list.nextUpdate, nextUpdate < time {
                throw untrusted(
                    "the CRL expired at \(nextUpdate); publish a fresh one with casemesh-ca crl", lasting: false)
            }
            if list.isRevoked(leaf) { throw untrusted("the peer's certificate is revoked") }
        }
        return try Self.replicaID(of: leaf)
    }
}
