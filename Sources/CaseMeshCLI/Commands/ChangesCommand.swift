import ArgumentParser
import CaseMeshCRDT
import CaseMeshStore
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

        func run() throws {
            let store = try store.openStore()
            let institution = try recipient.map { text in
                try CLIError.wrap {
                    text.contains("/") ? try ReplicaID(text).institution : try InstitutionID(text)
                }
            }
            let changes = try CLIError.wrap { try store.encodedChanges(for: institution) }
            let bundle = ChangeBundle(
                schemaVersion: store.schema.version, source: store.replicaID, recipient: institution,
                createdAtMillis: SystemWallClock().nowMillis(), changes: changes)
            let bytes = bundle.encoded()
            do {
                try Data(bytes).write(to: URL(fileURLWithPath: out), options: .atomic)
            } catch {
                throw CLIError(message: "cannot write \(out): \(error.localizedDescription)")
            }
            let exported = Set(changes.compactMap { try? Change(decoding: $0).caseID })
            try access.record(store, exported.sorted(), .export, via: "changes export")
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

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply a bundle file's changes; importing twice or in any order gives the same state.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The bundle file.") var file: String
        @Option(help: "Changes per transaction.") var batch = 10_000
        @Flag(help: "Print a line after each committed transaction (what it counts is durable).") var progress = false

        func validate() throws {
            guard batch > 0 else { throw ValidationError("--batch must be positive") }
        }

        func run() throws {
            let store = try store.openStore()
            let bytes: [UInt8]
            do {
                bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
            } catch {
                throw CLIError(message: "cannot read \(file): \(error.localizedDescription)")
            }
            let bundle = try CLIError.wrap {
                try ChangeBundle(decoding: bytes, expectedSchemaVersion: store.schema.version)
            }
            var decoded: [(change: Change, body: [UInt8])] = []
            var undecodable: [String] = []
            for body in bundle.changes {
                do {
                    decoded.append((try Change(decoding: body), body))
                } catch {
                    undecodable.append(error.message)
                }
            }
            let total = decoded.count
            let report = try CLIError.wrap {
                try store.apply(decoded, batchSize: batch) { soFar in
                    guard progress else { return }
                    if output.json {
                        emit(
                            JSONValue.object([
                                "durable_applied": .number(Int64(soFar.applied)),
                                "duplicates": .number(Int64(soFar.duplicates)),
                                "of": .number(Int64(total)),
                            ]).text)
                    } else {
                        emit(
                            "  \(soFar.applied + soFar.duplicates + soFar.rejected.count) of \(total) changes processed"
                        )
                    }
                }
            }
            let reasons = undecodable + report.rejected.map { "\($0.caseID) \($0.dot): \($0.reason)" }
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
                        + "\(reasons.count) refused")
            }
            if let first = reasons.first {
                throw CLIError(message: "refused \(reasons.count) of \(bundle.changes.count) changes: \(first)")
            }
        }
    }
}
