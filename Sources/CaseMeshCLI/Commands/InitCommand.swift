import ArgumentParser
import CaseMeshCRDT
import CaseMeshOperations
import CaseMeshStore

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Create a replica in the data directory.")

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions

    @Option(name: .long, help: "The replica ID, institution/node (e.g. dongducheon.jungang-dong/server).")
    var replica: String

    func run() throws {
        let created = try CLIError.wrap {
            let replicaID = try ReplicaID(replica)
            return try CaseStore.create(directory: store.data, replicaID: replicaID)
        }
        if output.json {
            emit(JSONValue.object(["replica": .string(created.replicaID.rawValue), "data": .string(store.data)]).text)
        } else {
            emit("created replica \(created.replicaID) in \(store.data)")
        }
    }
}
