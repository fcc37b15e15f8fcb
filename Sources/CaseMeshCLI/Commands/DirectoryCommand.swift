import ArgumentParser
import CaseMeshModel
import CaseMeshNet
import CaseMeshNode
import CaseMeshOperations
import CaseMeshStore
import Foundation
import X509

/// `casemesh directory`: the consortium's member institutions as this node holds them.
struct DirectoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "directory",
        abstract: "Show the consortium directory this node holds, or install a newer one.",
        subcommands: [Show.self, Install.self],
        defaultSubcommand: Show.self)

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the member institutions, their kinds, regions and nodes.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let replica = try store.openStore()
            guard let directory = try CLIError.wrap({ try replica.memberDirectory() }) else {
                throw CLIError(
                    message: "no consortium directory in \(store.data): serve it with --directory FILE, or run "
                        + "'casemesh directory install FILE --ca CA'")
            }
            if output.json {
                emit(
                    JSONValue.object([
                        "serial": .number(Int64(directory.serial)), "issued_at": .string(directory.issuedAt),
                        "members": .array(
                            directory.members.map { member in
                                .object([
                                    "id": .string(member.id.rawValue), "name": .string(member.name),
                                    "kind": .string(member.kind.rawValue), "region": .string(member.region),
                                    "covers": .array(member.covers.map(JSONValue.string)),
                                    "nodes": .array(
                                        member.nodes.map {
                                            .object([
                                                "replica": .string($0.replica.rawValue), "address": .string($0.address),
                                            ])
                                        }),
                                ])
                            }),
                    ]).text)
                return
            }
            emit("consortium directory serial \(directory.serial), issued \(directory.issuedAt)")
            for member in directory.members {
                let nodes = member.nodes.map { "\($0.replica)=\($0.address)" }.joined(separator: ", ")
                emit(
                    "\(member.id)  \(member.name)  \(member.kind.korean)  \(member.region)"
                        + (member.covers.isEmpty ? "" : "  관할 \(member.covers.joined(separator: ", "))")
                        + (nodes.isEmpty ? "" : "  \(nodes)"))
            }
        }
    }

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a directory file against the consortium CA and install it (serve does this itself).")

        @Argument(help: "The directory file (casemesh-ca directory writes directory.json).") var file: String
        @Option(help: "The consortium CA certificate (PEM).") var ca: String
        @OptionGroup var store: StoreOptions

        func run() throws {
            guard let text = try? String(contentsOfFile: ca, encoding: .utf8),
                let authority = try? Certificate(pemEncoded: text)
            else { throw CLIError(message: "cannot read the CA certificate \(ca)") }
            let directory = try CLIError.wrap { () throws(NetError) in
                try SignedDirectory.load(file, authority: authority)
            }
            let replica = try store.openStore()
            guard let bytes = FileManager.default.contents(atPath: file) else {
                throw CLIError(message: "cannot read \(file)")
            }
            let changed = try CLIError.wrap { try replica.installDirectory(directory, envelope: [UInt8](bytes)) }
            emit(
                changed
                    ? "installed consortium directory serial \(directory.serial) (\(directory.members.count) members)"
                    : "serial \(directory.serial) is already installed")
        }
    }
}
