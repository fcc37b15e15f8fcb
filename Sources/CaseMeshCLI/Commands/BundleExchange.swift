import CaseMeshCRDT
import CaseMeshNet
import CaseMeshStore
import CaseMeshSyncDriver
import Foundation

/// Writing and reading change bundles the one way both `changes export`/`import`
/// and `demo --offline` do it: a bundle carries what the recipient may receive,
/// with its origins' seals and certificates, and an import verifies every signer
/// (against the CA, or as already trusted here) before anything applies.
enum BundleExchange {
    /// What may go to `institution` (everything when nil), sealed.
    static func bundle(from store: CaseStore, for institution: InstitutionID?) throws(StoreError) -> (
        bundle: ChangeBundle, page: LogPage
    ) {
        let page = try store.exportPage(for: institution)
        let bundle = ChangeBundle(
            schemaVersion: store.schema.version, source: store.replicaID, recipient: institution,
            createdAtMillis: SystemWallClock().nowMillis(), changes: page.changes.map { $0.encoded() },
            leaves: page.leaves, seals: page.seals, certificates: page.certificates)
        return (bundle, page)
    }

    /// What an import found before applying: the changes that decoded, with their
    /// leaves, and what did not.
    struct Decoded {
        var changes: [(change: Change, body: [UInt8])] = []
        var leaves: [SealLeaf?] = []
        var undecodable: [String] = []
    }

    static func decode(_ bundle: ChangeBundle) -> Decoded {
        var decoded = Decoded()
        for (index, body) in bundle.changes.enumerated() {
            do {
                decoded.changes.append((try Change(decoding: body), body))
                decoded.leaves.append(bundle.leaves.indices.contains(index) ? bundle.leaves[index] : nil)
            } catch {
                decoded.undecodable.append(error.message)
            }
        }
        return decoded
    }

    /// Verifies the bundle's signers: new ones against the CA, trusted ones against
    /// the CRL again.
    static func checkSigners(_ bundle: ChangeBundle, store: CaseStore, verifier: PeerVerifier) async throws(StoreError)
        -> SignerTrust.Verdict
    {
        try await SignerTrust.check(
            store: store, offered: bundle.certificates, signers: Set(bundle.seals.map(\.origin))
        ) { signer, certificate in try await verifier.verifySigner(signer, certificate: certificate) }
    }

    /// Applies a decoded bundle, every change authenticated by its seal.
    static func apply(
        _ decoded: Decoded, of bundle: ChangeBundle, to store: CaseStore, batchSize: Int = 10_000,
        distrusted: [ReplicaID: String] = [:], progress: (ApplyReport) -> Void = { _ in }
    ) throws(StoreError) -> ApplyReport {
        try store.apply(
            decoded.changes, batchSize: batchSize,
            authentication: BundleSeals(
                leaves: decoded.leaves, seals: bundle.seals, sender: bundle.source, certificates: bundle.certificates,
                distrusted: distrusted),
            progress: progress)
    }
}
