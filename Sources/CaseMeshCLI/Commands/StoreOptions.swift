import ArgumentParser
import CaseMeshCRDT
import CaseMeshNet
import CaseMeshStore
import Foundation

/// Options every command that opens a replica shares.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "The replica's data directory.")
    var data: String = "./casemesh-data"

    func openStore() throws -> CaseStore {
        try CLIError.wrap { () throws(StoreError) in try CaseStore.open(directory: data) }
    }
}

/// `--json` for commands that report results.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON.")
    var json = false
}

/// Who acts and why, for the access log of every case a command reads or writes.
struct AccessOptions: ParsableArguments {
    @Option(help: "Who is acting, for the access log (default: the operating-system user).")
    var actor: String?
    @Option(help: "Why, for the access log.")
    var purpose = "case-management"

    /// The access-log entry of this command (PIPA §29, §35; 안전성 확보조치 기준 §8).
    func entry(_ action: AccessAction, via command: String) -> AccessRecord {
        AccessRecord(
            action: action, actor: actor ?? Self.operatingSystemAccount, purpose: purpose, via: "casemesh " + command)
    }

    /// Records an access to a case in its access log.
    func record(_ store: CaseStore, _ caseID: CaseID, _ action: AccessAction, via command: String) throws {
        try record(store, [caseID], action, via: command)
    }

    /// Records the same access to several cases, in one transaction.
    func record(_ store: CaseStore, _ caseIDs: [CaseID], _ action: AccessAction, via command: String) throws {
        guard !caseIDs.isEmpty else { return }
        try CLIError.wrap { try store.recordAccess(to: caseIDs, entry(action, via: command)) }
    }

    /// The account running the tool: the operating system's, not `$USER`, which is
    /// unset under systemd and in containers (and which anyone can set).
    static var operatingSystemAccount: String {
        if let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name {
            return String(cString: name)
        }
        return "uid \(geteuid())"
    }
}

/// The node's certificate and key, for sealing its own changes before they go into
/// a bundle (`serve` and `sync` seal them too; a node that never ran either needs this).
struct BundleSigningOptions: ParsableArguments {
    @Option(help: "This node's certificate (PEM), to seal its changes.") var cert: String?
    @Option(help: "This node's private key (PEM).") var key: String?
    @Option(help: "The consortium CA certificate (PEM).") var ca: String?

    func sealOwnChanges(_ store: CaseStore) throws {
        guard cert != nil || key != nil || ca != nil else { return }
        guard let cert, let key, let ca else { throw CLIError(message: "--cert, --key and --ca go together") }
        let credentials = try CLIError.wrap { () throws(NetError) in
            try NodeCredentials(certificate: cert, key: key, authority: ca, revocationList: nil)
        }
        guard credentials.replicaID == store.replicaID else {
            throw CLIError(
                message: "the certificate names \(credentials.replicaID), the data directory \(store.replicaID)")
        }
        try CLIError.wrap {
            try store.trustSigner(
                credentials.replicaID, publicKey: credentials.publicKeyRaw, certificate: credentials.certificateDER)
            try store.sealOwnChanges(sign: { message in try credentials.sign(message) })
        }
    }
}
