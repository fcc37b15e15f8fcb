public import ArgumentParser
import CaseMeshModel
import CaseMeshSync
import Foundation

/// The `casemesh` command-line tool: an institution's replica of joint case records.
public struct CaseMeshCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "casemesh",
        abstract: "Joint case management across welfare institutions, offline first.",
        discussion: """
            Each institution keeps a replica of the cases it takes part in. Case records \
            are CRDTs: edits made offline at several institutions merge without losing \
            anyone's work, and concurrent writes to one field stay visible as a conflict \
            until a person resolves it.
            """,
        version: CaseMeshCommand.versionText,
        subcommands: [
            InitCommand.self, CaseCommand.self, ConflictsCommand.self, ResolveCommand.self, ChangesCommand.self,
            ServeCommand.self, SyncCommand.self, PeersCommand.self, HarnessCommand.self, DemoCommand.self,
            BenchCommand.self, AuditCommand.self, QuarantineCommand.self, StaffCommand.self, IntakeKeyCommand.self,
            StatusCommand.self, CheckCommand.self, BackupCommand.self, RestoreCommand.self, ReloadCommand.self,
            ReportCommand.self, SchemaCommand.self, DirectoryCommand.self,
        ]
    )

    /// What `casemesh --version` prints: the release and the versions a consortium's
    /// nodes must agree on.
    static let versionText =
        "casemesh \(release) (sync protocol \(SyncSession.Configuration(schemaVersion: 0).protocolVersion), "
        + "case schema \(CaseSchema.bundled.version))"
    static let release = "0.5.0"

    public init() {}
}

extension CaseMeshCommand {
    /// Parses the process's arguments and runs the chosen command.
    public static func runFromCommandLine() async {
        if let message = unknownSubcommand(in: Array(CommandLine.arguments.dropFirst())) {
            FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
            Foundation.exit(64)
        }
        await main()
    }

    /// A word where a subcommand belongs that names none (`casemesh case lsit`), said
    /// as such with the nearest name, rather than the parser's complaint about the
    /// options that follow it.
    static func unknownSubcommand(in arguments: [String]) -> String? {
        var command: any ParsableCommand.Type = CaseMeshCommand.self
        var path = "casemesh"
        for word in arguments {
            let subcommands = command.configuration.subcommands
            guard !subcommands.isEmpty, !word.hasPrefix("-") else { return nil }
            if let next = subcommands.first(where: { $0._commandName == word }) {
                command = next
                path += " " + word
                continue
            }
            // A default subcommand may take the word as its own argument.
            if command.configuration.defaultSubcommand != nil { return nil }
            if word == "help" { return nil }
            let names = subcommands.map { type in type._commandName }
            let nearest = names.min { distance($0, word) < distance($1, word) }
            let suggestion = nearest.map { distance($0, word) <= 3 ? "; did you mean '\($0)'?" : "" } ?? ""
            return "'\(word)' is not a subcommand of '\(path)'\(suggestion) (see '\(path) --help')"
        }
        return nil
    }

    /// The edit distance between two words, a swap of neighbours counting as one
    /// edit (`lsit` is one from `list`), for suggestions.
    private static func distance(_ first: String, _ second: String) -> Int {
        let a = Array(first)
        let b = Array(second)
        guard !a.isEmpty, !b.isEmpty else { return Swift.max(a.count, b.count) }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = Swift.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = Swift.min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
