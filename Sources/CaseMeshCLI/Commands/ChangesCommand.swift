import ArgumentParser
import CaseMeshCRDT
import CaseMeshNet
import CaseMeshOperations
import CaseMeshStore
import CaseMeshSyncDriver
import Foundation

struct ChangesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "changes", abstract: "Carry changes between replicas as bundle files (no network needed).",
        subcommands: [Export.self, Import.self])
}

extension ChangesCommand {
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write this replica's changes to a bundle file.",
            discussion: "With --for, only the cases the recipient's institution participates in go into the bundle.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Option(name: .long, help: "The bundle file to write.") var out: String
        @Option(name: .customLong("for"), help: "The recipient replica or institution ID.") var recipient: String?
        @OptionGroup var signing: BundleSigningOptions

        func run() throws {
            let store = try store.openStore()
            let institution = try recipient.map { text in
                try CLIError.wrap {
                    text.contains("/") ? try ReplicaID(text).institution : try InstitutionID(text)
                }
            }
            try signing.sealOwnChanges(store)
            let (bundle, page) = try CLIError.wrap { try BundleExchange.bundle(from: store, for: institution) }
            let changes = bundle.changes
            let unsealed = page.leaves.count - page.leaves.compactMap { $0 }.count
            if unsealed > 0 {
                FileHandle.standardError.write(
                    Data(
                        "warning: \(unsealed) changes are not sealed yet and will be quarantined by the importer; give --cert, --key and --ca to seal this node's changes\n"
                            .utf8))
            }
            let bytes = bundle.encoded()
            do {
                try Data(bytes).write(to: URL(fileURLWithPath: out), options: .atomic)
            } catch {
                throw CLIError(message: "cannot write \(out): \(error.localizedDescription)")
            }
            // What the bundle carries of this node's own changes has gone out: a case
            // withdrawn from this institution may be purged once all its edits have.
            try CLIError.wrap { try store.recordDelivered(page.ownChangesSent) }
            let exported = Set(changes.compactMap { try? Change(decoding: $0).caseID })
            try access.record(store, exported.sorted(), .export, via: "changes export")
            // A case withdrawn from this institution whose own edits this bundle carries
            // out may go now.
            let purged = try CLIError.wrap { try store.purgeUnentitledCases() }
            if !output.json {
                for item in purged { emit("purged \(item.caseID): \(item.reason)") }
            }
            if output.json {
                emit(
                    JSONValue.object([
                        "changes": .number(Int64(changes.count)), "bytes": .number(Int64(bytes.count)),
                        "file": .string(out),
                    ]).text)
            } else {
                emit("exported \(changes.count) changes (\(bytes.count) bytes) to \(out)")
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply a bundle file's changes; importing twice or in any order gives the same state.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The bundle file.") var file: String
        @Option(help: "Changes per transaction.") var batch = 10_000
        @Flag(help: "Print a line after each committed transaction (what it counts is durable).") var progress = false
        @Option(help: "The consortium CA certificate (PEM), to verify signers this node does not know yet.")
        var ca: String?
        @Option(help: "The consortium CA's revocation list (PEM); required with --ca.") var crl: String?

        func validate() throws {
            guard batch > 0 else { throw ValidationError("--batch must be positive") }
            guard ca == nil || crl != nil else {
                throw ValidationError(
                    "--ca needs --crl: without the consortium's revocation list, a revoked laptop's changes would be accepted"
                )
            }
        }

        func run() async throws {
            let store = try store.openStore()
            let bytes: [UInt8]
            do {
                bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
            } catch {
                throw CLIError(message: "cannot read \(file): \(error.localizedDescription)")
            }
            let bundle = try CLIError.wrap {
                try ChangeBundle(decoding: bytes)
            }
            // Every change must carry a valid seal of its origin, as from a sync peer:
            // signers are verified against the CA (or already known here).
            var refusedSigners: [String] = []
            var distrusted: [ReplicaID: String] = [:]
            if let ca {
                let verifier = try CLIError.wrap { () throws(NetError) in
                    try PeerVerifier(authorityFile: ca, revocationList: crl)
                }
                // New signers are verified; those already trusted here are checked
                // again against this CRL.
                let verdict = try await CLIError.wrap { () async throws(StoreError) in
                    try await BundleExchange.checkSigners(bundle, store: store, verifier: verifier)
                }
                distrusted = verdict.distrusted
                refusedSigners = verdict.refused
            }
            let decoded = BundleExchange.decode(bundle)
            let undecodable = decoded.undecodable
            let total = decoded.changes.count
            let json = output.json
            let showProgress = progress
            let onProgress: (ApplyReport) -> Void = { soFar in
                guard showProgress else { return }
                if json {
                    emit(
                        JSONValue.object([
                            "durable_applied": .number(Int64(soFar.applied)),
                            "duplicates": .number(Int64(soFar.duplicates)), "of": .number(Int64(total)),
                        ]).text)
                } else {
                    emit("  \(soFar.applied + soFar.duplicates + soFar.rejected.count) of \(total) changes processed")
                }
            }
            let report = try CLIError.wrap { () throws(StoreError) in
                try BundleExchange.apply(
                    decoded, of: bundle, to: store, batchSize: batch, distrusted: distrusted, progress: onProgress)
            }
            var reasons = refusedSigners + undecodable + report.rejected.map { "\($0.caseID) \($0.dot): \($0.reason)" }
            if ca == nil, reasons.contains(where: { $0.contains("no verified certificate") }) {
                // The usual cause: the signers are new here and no CA was named.
                reasons[0] +=
                    " (pass --ca with the consortium CA to verify signers new to this node, then "
                    + "'casemesh quarantine retry --ca' for what was kept aside)"
            }
            if output.json {
                var json = CaseRendering.json(report)
                if case .object(var members) = json {
                    members["undecodable"] = .array(undecodable.map(JSONValue.string))
                    json = .object(members)
                }
                emit(json.text)
            } else {
                emit(
                    "imported \(bundle.changes.count) changes from \(bundle.source): \(report.applied) applied, "
                        + "\(report.duplicates) already held, \(report.deferred) waiting for earlier changes, "
                        + "\(reasons.count) refused"
                        + (report.heldForNewerSchema == 0
                            ? ""
                            : "; \(report.heldForNewerSchema) write fields of a newer case schema than this node's "
                                + "\(store.schema.version), held until it upgrades (casemesh schema)"))
            }
            // A bundle may carry the end of this institution's right to a case.
            let purged = try CLIError.wrap { try store.purgeUnentitledCases() }
            if !output.json {
                for item in purged { emit("purged \(item.caseID): \(item.reason)") }
            }
            if let first = reasons.first {
                throw CLIError(message: "refused \(reasons.count) of \(bundle.changes.count) changes: \(first)")
            }
        }
    }
}
