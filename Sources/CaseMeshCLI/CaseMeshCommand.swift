public import ArgumentParser

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
        subcommands: [
            InitCommand.self, CaseCommand.self, ConflictsCommand.self, ResolveCommand.self, ChangesCommand.self,
            ServeCommand.self, SyncCommand.self, PeersCommand.self, HarnessCommand.self, DemoCommand.self,
            BenchCommand.self, AuditCommand.self, QuarantineCommand.self,
        ]
    )

    public init() {}
}

extension CaseMeshCommand {
    /// Parses the process's arguments and runs the chosen command.
    public static func runFromCommandLine() async {
        await main()
    }
}
