public import CaseMeshCRDT
public import CaseMeshStore
import CaseMeshSync

/// How a receiver decides which signers' seals it trusts, the same for a sync batch,
/// a bundle and a quarantine retry: a certificate this store has not recorded is
/// verified (consortium CA, CRL, the replica it names) and recorded; a signer already
/// recorded is verified again against the current CRL, so a laptop revoked at noon
/// writes nothing through this node after noon.
public enum SignerTrust {
    /// Verifies a node's certificate and returns its raw P-256 public key.
    public typealias Verify = @Sendable (ReplicaID, [UInt8]) async throws -> [UInt8]

    /// What a check found.
    public struct Verdict: Sendable {
        /// Signers whose recorded certificate no longer verifies, with why: their
        /// seals are refused whatever this node recorded of them before.
        public var distrusted: [ReplicaID: String] = [:]
        /// One line per certificate refused, for the session's or the import's report.
        public var refused: [String] = []
    }

    /// Records the offered certificates that verify and checks again the recorded
    /// ones of `signers`.
    ///
    /// - Parameters:
    ///   - offered: certificates that came with the changes, by the replica each names.
    ///   - signers: the origins of the seals that came with them.
    /// - Throws: ``StoreError`` only; a certificate that does not verify is a refusal
    ///   in the verdict, never an error (the rest of the changes go on).
    public static func check(
        store: CaseStore, offered: [ReplicaID: [UInt8]], signers: Set<ReplicaID>, verify: Verify
    ) async throws(StoreError) -> Verdict {
        var verdict = Verdict()
        var verifiedNow: Set<ReplicaID> = []
        for (signer, certificate) in offered.sorted(by: { $0.key < $1.key })
        where !(try store.knowsSigner(signer, certificate: certificate)) {
            // A certificate that does not verify is not recorded: the seals it would
            // check are refused, the rest goes on.
            do {
                let key = try await verify(signer, certificate)
                try store.trustSigner(signer, publicKey: key, certificate: certificate)
                verifiedNow.insert(signer)
            } catch let error as StoreError {
                throw error
            } catch {
                verdict.refused.append("certificate of \(signer) refused: \(error)")
                // A certificate that can never verify (revoked, expired, another CA):
                // its seals are refused for good, so the pull cursor passes them and
                // the changes after them count as delivered. One that may verify later
                // (a stale CRL here) holds them back to be fetched again.
                if let refusal = error as? any CertificateRefusal, refusal.isLasting {
                    verdict.distrusted[signer] = "\(error)"
                }
            }
        }
        let known = try store.signerCertificates(signers)
        for (signer, certificate) in known.sorted(by: { $0.key < $1.key }) where !verifiedNow.contains(signer) {
            do {
                _ = try await verify(signer, certificate)
            } catch {
                verdict.distrusted[signer] = "\(error)"
                verdict.refused.append("certificate of \(signer) no longer verifies: \(error)")
            }
        }
        return verdict
    }
}
