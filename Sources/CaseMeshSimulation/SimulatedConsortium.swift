import CaseMeshCRDT
import CaseMeshNet
import CaseMeshStore
import CaseMeshSyncDriver

/// The consortium of a simulated run: a CA of its own (a real certificate per
/// replica and a real signed CRL) and, per replica, a store with its node's
/// signing and verification, as `casemesh serve` sets them up.
struct SimulatedConsortium {
    let authority: EphemeralAuthority

    /// One replica as a node sets it up.
    struct Member {
        var store: CaseStore
        var authentication: SyncDriver.Authentication
        /// Its certificate (PEM), to revoke.
        var certificatePath: String
    }

    init(directory: String) throws {
        authority = try EphemeralAuthority(directory: directory)
    }

    /// Creates `replica`'s store in `directory`, with a fresh certificate.
    func member(_ replica: ReplicaID, directory: String, clock: SimulatedClock) throws -> Member {
        let store = try CaseStore.create(directory: directory, replicaID: replica, clock: clock)
        let files = try authority.issue(replica)
        let credentials = try NodeCredentials(
            certificate: files.certificate, key: files.key, authority: authority.certificatePath,
            revocationList: authority.revocationListPath)
        let verifier = PeerVerifier(credentials: credentials)
        // As a node does at start: its own certificate signs its seals.
        try store.trustSigner(replica, publicKey: credentials.publicKeyRaw, certificate: credentials.certificateDER)
        return Member(
            store: store,
            authentication: SyncDriver.Authentication(
                sign: { message in try credentials.sign(message) },
                verifyCertificate: { signer, der in try await verifier.verifySigner(signer, certificate: der) }),
            certificatePath: files.certificate)
    }

    /// Revokes the member's certificate: every verifier sees it at its next check.
    func revoke(_ member: Member) throws {
        try authority.revoke(certificateAt: member.certificatePath)
    }
}
