import ArgumentParser
import CaseMeshCRDT
import CaseMeshOperations
import CaseMeshStore
import Foundation

/// `casemesh audit --case ID`: who saw or changed a person's record (PIPA §35).
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Show who read or changed a case, on any node whose log reached this one.",
        discussion: """
            Every read and write of case data through the tool is recorded (account, institution, node, time, \
            action, purpose) in the case's access log, which replicates to the case's lead institution. On the \
            lead's nodes this shows the accesses made on every participant's node after they synced; elsewhere, \
            the accesses this institution made. Only for cases this node holds. Entries older than the retention \
            period are left out.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(name: .customLong("case"), help: "The case ID.") var caseID: String
    @Option(help: "How long access records are kept, in days (PIPA: at least two years for sensitive data).")
    var retentionDays = 730

    func validate() throws {
        guard retentionDays >= 1 else { throw ValidationError("--retention-days must be at least 1") }
    }

    func run() throws {
        let store = try store.openStore()
        let caseID = try FieldInput.caseID(caseID)
        let entries = try CLIError.wrap { try store.accessLog(of: caseID) }
        let now = SystemWallClock().nowMillis()
        let horizon = now - min(now, UInt64(retentionDays) * 86_400_000)
        let kept = entries.filter { $0.occurredAtMillis >= horizon }
        if output.json {
            emit(
                JSONValue.array(
                    kept.map { entry in
                        .object([
                            "time": .string(CaseRendering.time(millis: entry.occurredAtMillis)),
                            "recorded": .string(CaseRendering.time(entry.hlc)),
                            "institution": .string(entry.node.institution.rawValue),
                            "node": .string(entry.node.rawValue),
                            "actor": .string(entry.record.actor),
                            "action": .string(entry.record.action.rawValue),
                            "purpose": .string(entry.record.purpose),
                            "via": .string(entry.record.via),
                        ])
                    }
                ).text)
        } else if kept.isEmpty {
            emit("no recorded access to \(caseID)")
        } else {
            for entry in kept {
                emit(
                    "\(CaseRendering.time(millis: entry.occurredAtMillis))  \(entry.node)  \(entry.record.actor)  \(entry.record.action.rawValue)  purpose \(entry.record.purpose)  via \(entry.record.via)"
                        + (entry.record.occurredAtMillis == nil
                            ? "" : "  (recorded \(CaseRendering.time(entry.hlc)), the disk was full)")
                )
            }
        }
    }
}
