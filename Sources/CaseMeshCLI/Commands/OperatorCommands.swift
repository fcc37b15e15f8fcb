import ArgumentParser
import CaseMeshNet
import CaseMeshOperations
import CaseMeshStore
import Foundation
import X509

/// `casemesh status`: one screen of what an operator watches on a node.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the node at a glance: replica, peers and lag, conflicts, quarantine, pending, store size.",
        discussion: "With --cert, also the days until the node's certificate expires. Reads only; no personal data.")

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The node's certificate (PEM), to show when it expires.") var cert: String?

    func run() throws {
        let store = try store.openStore()
        let figures = try CLIError.wrap { try store.figures() }
        let peers = try CLIError.wrap { try store.peerStates() }
        let held = try CLIError.wrap { try store.restoreHold() }
        let newer = try CLIError.wrap { try store.heldForNewerSchema() }
        let directory = try CLIError.wrap { try store.memberDirectory() }
        let now = SystemWallClock().nowMillis()
        var expiry: Date?
        if let cert {
            guard let text = try? String(contentsOfFile: cert, encoding: .utf8),
                let certificate = try? Certificate(pemEncoded: text)
            else { throw CLIError(message: "cannot read the certificate \(cert)") }
            expiry = certificate.notValidAfter
        }
        if output.json {
            var object: [String: JSONValue] = [
                "replica": .string(store.replicaID.rawValue),
                "institution": .string(store.replicaID.institution.rawValue),
                "cases": .number(Int64(figures.casesHeld)), "open_conflicts": .number(Int64(figures.openConflicts)),
                "quarantined": .number(Int64(figures.quarantined)), "pending": .number(Int64(figures.pending)),
                "purged": .number(Int64(figures.purged)), "log_changes": .number(Int64(clamping: figures.logLength)),
                "store_bytes": .number(figures.storeBytes),
                "schema": .number(Int64(store.schema.version)),
                "directory": directory.map { directory in
                    .object([
                        "serial": .number(Int64(directory.serial)), "members": .number(Int64(directory.members.count)),
                    ])
                } ?? .null,
                "held_for_newer_schema": .object([
                    "changes": .number(Int64(newer.changes)), "fields": .array(newer.fields.map(JSONValue.string)),
                ]),
                "peers": .array(
                    peers.map { peer in
                        .object([
                            "peer": .string(peer.peer.rawValue),
                            "lag_seconds": peer.lastSuccessAtMillis.map {
                                .number(Int64(clamping: now.saturatingSubtract($0) / 1000))
                            } ?? .null,
                            "last_error": peer.lastError.map(JSONValue.string) ?? .null,
                        ])
                    }),
            ]
            if let expiry { object["certificate_days_left"] = .number(Int64(expiry.timeIntervalSinceNow / 86_400)) }
            object["restore_waiting_for"] = .array(held.map { .string($0.rawValue) })
            emit(JSONValue.object(object).text)
            return
        }
        let own = directory?.member(store.replicaID.institution).map { "\($0.name), " } ?? ""
        emit("replica      \(store.replicaID)  (\(own)institution \(store.replicaID.institution))")
        if let directory {
            emit(
                "directory    serial \(directory.serial), \(directory.members.count) members, issued \(directory.issuedAt)"
            )
        }
        emit(
            "cases        \(figures.casesHeld) held, \(figures.openConflicts) open conflicts, \(figures.purged) purged"
        )
        emit(
            "changes      \(figures.logLength) in the log, \(figures.pending) pending, \(figures.quarantined) quarantined"
        )
        emit("store        \(ByteCountFormatter.string(fromByteCount: figures.storeBytes, countStyle: .file))")
        emit(
            "schema       case schema \(store.schema.version)"
                + (newer.changes == 0
                    ? ""
                    : "; \(newer.changes) changes hold fields of a newer schema (\(newer.fields.joined(separator: ", "))): "
                        + "upgrade this node"))
        if let expiry {
            emit(
                "certificate  expires \(CaseRendering.time(.init(physical: UInt64(max(0, expiry.timeIntervalSince1970 * 1000))))) (\(Int(expiry.timeIntervalSinceNow / 86_400)) days)"
            )
        }
        if !held.isEmpty {
            emit(
                "restored     from a backup: no change of its own until it has synced with "
                    + held.map(\.rawValue).joined(separator: ", "))
        }
        if peers.isEmpty { emit("peers        none synced yet") }
        for peer in peers {
            let lag = peer.lastSuccessAtMillis.map { "\(now.saturatingSubtract($0) / 1000) s ago" } ?? "never"
            emit("peer         \(peer.peer)  last success \(lag)\(peer.lastError.map { "  last error: \($0)" } ?? "")")
        }
    }
}

/// `casemesh check`: the store checked through; non-zero exit on any problem.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the store: SQLite integrity, version vectors against the change log, case listings.",
        discussion: "Exits non-zero and names each problem when there is one. Reads only; safe beside serve.")

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let store = try store.openStore()
        let problems = try CLIError.wrap { try store.check() }
        if output.json {
            emit(
                JSONValue.object(["ok": .bool(problems.isEmpty), "problems": .array(problems.map(JSONValue.string))])
                    .text)
        } else if problems.isEmpty {
            emit("ok: the store is sound")
        } else {
            for problem in problems { emit(problem) }
        }
        if !problems.isEmpty { throw ExitCode(1) }
    }
}
