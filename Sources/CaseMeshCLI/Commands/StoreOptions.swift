import ArgumentParser
import CaseMeshStore

/// Options every command that opens a replica shares.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "The replica's data directory.")
    var data: String = "./casemesh-data"

    func openStore() throws -> CaseStore {
        try CLIError.wrap { () throws(StoreError) in try CaseStore.open(directory: data) }
    }
}

/// `--json` for commands that report results.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON.")
    var json = false
}
