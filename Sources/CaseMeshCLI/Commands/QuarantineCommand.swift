import ArgumentParser
import CaseMeshStore
import Foundation

/// `casemesh quarantine`: received changes refused as unauthenticated.
struct QuarantineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine", abstract: "List received changes refused because they could not be authenticated.",
        discussion: """
            A change is quarantined when no valid seal of its origin covers it: the seal's signature does not \\
            match the change (altered or forged by a relay), its signer's certificate could not be verified, or it \\
            came without a seal. Quarantined changes are never applied and never block the rest of a sync.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let store = try store.openStore()
        let entries = try CLIError.wrap { try store.quarantined() }
        if output.json {
            emit(
                JSONValue.array(
                    entries.map { entry in
                        .object([
                            "case": .string(entry.caseID), "origin": .string(entry.origin),
                            "seq": .number(Int64(entry.seq)), "from": .string(entry.sender),
                            "reason": .string(entry.reason),
                            "received": .string(CaseRendering.time(.init(physical: entry.receivedAtMillis))),
                        ])
                    }
                ).text)
        } else if entries.isEmpty {
            emit("nothing quarantined")
        } else {
            for entry in entries {
                emit("\(entry.caseID) \(entry.origin) #\(entry.seq) from \(entry.sender): \(entry.reason)")
            }
        }
    }
}
