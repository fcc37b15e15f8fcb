import ArgumentParser
import CaseMeshModel
import CaseMeshNode
import CaseMeshOperations
import CaseMeshStore
import Foundation

/// `casemesh schema`: which case schema a node follows, and its upgrade.
struct SchemaCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schema",
        abstract: "Show the case schema a node follows, or install a newer one.",
        subcommands: [Show.self, Install.self],
        defaultSubcommand: Show.self)

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the node's case schema version and what it holds for a newer one.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let replica = try store.openStore()
            let held = try CLIError.wrap { try replica.heldForNewerSchema() }
            let installed = FileManager.default.fileExists(
                atPath: (store.data as NSString).appendingPathComponent(CaseStore.schemaFileName))
            let source = replica.schema.version > CaseSchema.bundled.version ? "installed" : "built in"
            if output.json {
                emit(
                    JSONValue.object([
                        "version": .number(Int64(replica.schema.version)), "source": .string(source),
                        "built_in": .number(Int64(CaseSchema.bundled.version)), "installed_file": .bool(installed),
                        "held_changes": .number(Int64(held.changes)),
                        "held_fields": .array(held.fields.map(JSONValue.string)),
                    ]).text)
                return
            }
            emit("case schema \(replica.schema.version) (\(source); this casemesh has \(CaseSchema.bundled.version))")
            if held.changes > 0 {
                emit(
                    "\(held.changes) changes write fields of a newer schema, held until this node upgrades: "
                        + held.fields.joined(separator: ", "))
            }
        }
    }

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install a newer case schema in the data directory (stop the node first).",
            discussion: """
                The file must have a higher schemaVersion and keep every entity and field of the schema the node \
                follows now (a newer schema only adds). At its next start the node merges what it held of the \
                new fields, received from peers that upgraded first. A newer casemesh whose built-in schema is \
                as new supersedes the installed file.
                """)

        @Argument(help: "The schema file (JSON, the format of schema/case-schema.json).") var file: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            guard let bytes = FileManager.default.contents(atPath: file) else {
                throw CLIError(message: "cannot read the schema file \(file)")
            }
            // The same lock serve takes: the node reads its schema when it starts.
            let lock: DataDirectoryLock
            do { lock = try DataDirectoryLock(directory: store.data) } catch {
                throw CLIError(message: "\(error.message); stop the node before installing a schema")
            }
            // The store is opened first: it must exist and follow the current schema.
            _ = try store.openStore()
            let versions = try CLIError.wrap { try CaseStore.installSchema([UInt8](bytes), directory: store.data) }
            let upgraded = try store.openStore()
            withExtendedLifetime(lock) {}
            emit(
                "case schema \(versions.from) -> \(versions.to) in \(store.data); "
                    + "held changes merged: \(try CLIError.wrap { try upgraded.heldForNewerSchema() }.changes) still held"
            )
        }
    }
}
