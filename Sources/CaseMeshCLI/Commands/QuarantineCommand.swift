import ArgumentParser
import CaseMeshNet
import CaseMeshOperations
import CaseMeshStore
import CaseMeshSyncDriver
import Foundation

/// `casemesh quarantine`: received changes kept aside because they could not be
/// authenticated or their writer may not write them.
struct QuarantineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine", abstract: "List, retry or drop received changes that were kept aside.",
        discussion: """
            A change is quarantined when no valid seal of its origin covers it (the seal's signature does not \
            match the change, its signer's certificate could not be verified, or it came without a seal), or \
            when its origin's institution may not write to the case. Quarantined changes are never applied and \
            never block the rest of a sync. There is one entry per change; it is resolved when the genuine \
            change arrives.
            """,
        subcommands: [List.self, Retry.self, Drop.self], defaultSubcommand: List.self)
}

extension QuarantineCommand {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the changes kept aside (unresolved ones; --all for every entry).")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @Flag(help: "Also list entries resolved by the genuine change.") var all = false

        func run() throws {
            let store = try store.openStore()
            let entries = try CLIError.wrap { try store.quarantined(includingResolved: all) }
            if output.json {
                emit(
                    JSONValue.array(
                        entries.map { entry in
                            .object([
                                "id": .number(entry.id),
                                "case": .string(entry.caseID), "origin": .string(entry.origin),
                                "seq": .number(Int64(clamping: entry.seq)), "from": .string(entry.sender),
                                "reason": .string(entry.reason), "attempts": .number(Int64(entry.attempts)),
                                "received": .string(CaseRendering.time(.init(physical: entry.receivedAtMillis))),
                                "resolved": entry.resolvedAtMillis.map {
                                    .string(CaseRendering.time(.init(physical: $0)))
                                } ?? .null,
                                "retryable": .bool(entry.canRetry),
                            ])
                        }
                    ).text)
            } else if entries.isEmpty {
                emit("nothing quarantined")
            } else {
                for entry in entries {
                    let state = entry.resolvedAtMillis == nil ? "" : " (resolved)"
                    emit(
                        Terminal.safe(
                            "\(entry.id): \(entry.caseID) \(entry.origin) #\(entry.seq) from \(entry.sender): "
                                + "\(entry.reason)\(state)"))
                }
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify again the changes refused for a signer this node could not verify.",
            discussion: """
                For changes that came (in a bundle or a sync) from a signer whose certificate this node had no \
                CA to check: give the consortium CA (and its revocation list); what verifies applies now.
                """)

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @Option(help: "The consortium CA certificate (PEM).") var ca: String
        @Option(help: "The consortium CA's revocation list (PEM).") var crl: String?

        func run() async throws {
            let store = try store.openStore()
            let verifier = try CLIError.wrap { () throws(NetError) in
                try PeerVerifier(authorityFile: ca, revocationList: crl)
            }
            // The certificates that came with what was kept aside are verified now;
            // signers already recorded are checked again against this CRL.
            let offered = try CLIError.wrap { try store.quarantinedSigners() }
            let verdict = try await CLIError.wrap { () async throws(StoreError) in
                try await SignerTrust.check(
                    store: store, offered: offered, signers: Set(offered.keys)
                ) { signer, certificate in try await verifier.verifySigner(signer, certificate: certificate) }
            }
            let refused = verdict.refused
            let report = try CLIError.wrap { try store.retryQuarantined(distrusted: verdict.distrusted) }
            let left = try CLIError.wrap { try store.quarantined() }.count
            if output.json {
                emit(
                    JSONValue.object([
                        "applied": .number(Int64(report.applied)), "still_quarantined": .number(Int64(left)),
                        "refused_signers": .array(refused.map(JSONValue.string)),
                    ]).text)
            } else {
                emit("\(report.applied) applied, \(left) still quarantined")
                for line in refused { emit(Terminal.safe(line)) }
            }
        }
    }

    struct Drop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget one quarantine entry (see its ID with 'casemesh quarantine --all').")

        @OptionGroup var store: StoreOptions
        @Argument(help: "The entry's ID.") var id: Int64

        func run() throws {
            let store = try store.openStore()
            try CLIError.wrap { try store.dropQuarantined(id: id) }
            emit("dropped quarantine entry \(id)")
        }
    }
}
