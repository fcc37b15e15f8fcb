import ArgumentParser
import CaseMeshCRDT
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

    /// Records an access to a case in its access log (PIPA §29, §35).
    func record(_ store: CaseStore, _ caseID: CaseID, _ action: AccessAction, via command: String) throws {
        try record(store, [caseID], action, via: command)
    }

    /// Records the same access to several cases, in one transaction.
    func record(_ store: CaseStore, _ caseIDs: [CaseID], _ action: AccessAction, via command: String) throws {
        guard !caseIDs.isEmpty else { return }
        let actor = actor ?? ProcessInfo.processInfo.environment["USER"] ?? "unknown"
        try CLIError.wrap {
            try store.recordAccess(
                to: caseIDs, AccessRecord(action: action, actor: actor, purpose: purpose, via: "casemesh " + command))
        }
    }
}
