import ArgumentParser
import CaseMeshNode
import CaseMeshOperations
import CaseMeshStore
import Foundation

/// `casemesh backup`: a consistent copy of a replica, taken while `serve` runs.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the replica to a backup file while the node runs, with its SHA-256 beside it.",
        discussion: """
            SQLite's online backup from a reader, in steps, so sync and the API keep writing. Writes FILE and \
            FILE.sha256 (sha256sum format). The backup holds personal data: keep it as the store is kept.
            """)

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The backup file to write (must not exist).") var out: String

    func run() throws {
        let replica = try store.openStore()
        let report = try CLIError.wrap { try replica.backup(to: out) }
        if output.json {
            emit(
                JSONValue.object([
                    "backup": .string(report.path), "checksum": .string(report.checksumPath),
                    "sha256": .string(report.sha256), "bytes": .number(report.bytes),
                    "replica": .string(report.replica.rawValue),
                    "log_changes": .number(Int64(clamping: report.logLength)),
                ]).text)
        } else {
            emit(
                "backed up \(report.replica) (\(report.logLength) changes, \(report.bytes) bytes) to \(report.path); "
                    + "SHA-256 \(report.sha256) in \(report.checksumPath)")
        }
    }
}

/// `casemesh restore`: puts a backup back, so the node resyncs without losing or
/// numbering anything twice.
struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Replace the replica in --data with a backup (refused while a node serves the directory).",
        discussion: """
            Checks the backup's checksum and integrity and that it is this replica's; keeps the replaced store \
            beside it. The restored node pulls every peer's log again (its own changes made after the backup come \
            back from its peers) and makes no change of its own until it has synced with every peer it knew at \
            the backup, so no change is numbered twice.
            """)

    @Argument(help: "The backup file (its FILE.sha256 beside it).") var backup: String
    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let directory = store.data
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // The same lock serve takes: a restore under a running node is refused.
        let lock: DataDirectoryLock
        do { lock = try DataDirectoryLock(directory: directory) } catch {
            throw CLIError(message: "\(error.message); stop the node before restoring")
        }
        let report = try CLIError.wrap { try CaseStore.restore(from: backup, into: directory) }
        withExtendedLifetime(lock) {}
        let waiting = report.waitingFor.map(\.rawValue)
        if output.json {
            emit(
                JSONValue.object([
                    "replica": .string(report.replica.rawValue),
                    "log_changes": .number(Int64(clamping: report.logLength)),
                    "previous_store": report.previousStore.map(JSONValue.string) ?? .null,
                    "waiting_for": .array(waiting.map(JSONValue.string)),
                ]).text)
        } else {
            emit("restored \(report.replica) from \(backup) (\(report.logLength) changes)")
            if let previous = report.previousStore { emit("the replaced store is kept at \(previous)") }
            if !waiting.isEmpty {
                emit(
                    "it makes no change until it has synced with \(waiting.joined(separator: ", ")): start serve "
                        + "(or run casemesh sync) and its peers send back what it lost")
            }
        }
    }
}
