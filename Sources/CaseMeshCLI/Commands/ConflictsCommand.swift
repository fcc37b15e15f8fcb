import ArgumentParser
import CaseMeshCRDT
import CaseMeshOperations
import CaseMeshStore

struct ConflictsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conflicts", abstract: "List fields written concurrently that wait for a person to resolve them.")

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var access: AccessOptions

    func run() throws {
        let store = try store.openStore()
        let conflicts = try CLIError.wrap {
            try store.openConflicts().filter { try store.withdrawal(of: $0.caseID) == nil }
        }
        try access.record(store, Array(Set(conflicts.map(\.caseID))).sorted(), .read, via: "conflicts")
        if output.json {
            emit(JSONValue.array(conflicts.map(CaseRendering.json)).text)
        } else if conflicts.isEmpty {
            emit("no open conflicts")
        } else {
            for conflict in conflicts {
                let values = conflict.siblings.map { "'\($0.value)' by \($0.dot.origin)" }.joined(separator: " vs ")
                emit("\(conflict.caseID)  \(conflict.field): \(values)")
            }
        }
    }
}

struct ResolveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resolve",
        abstract: "Resolve a conflict by choosing the field's value; the resolution is itself a change.")

    @OptionGroup var store: StoreOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var access: AccessOptions
    @Argument(help: "The case ID.") var caseID: String
    @Argument(help: "The conflicted field.") var field: String
    @Argument(help: "The value to keep.") var value: String

    func run() throws {
        let store = try store.openStore()
        let caseID = try FieldInput.caseID(caseID)
        let change: Change
        do {
            change = try CaseOperations(store: store).resolve(
                caseID: caseID, field: field, value: value, recording: access.entry(.write, via: "resolve"))
        } catch let refusal as CaseOperations.Refusal {
            throw CLIError(message: refusal.message)
        } catch let error as StoreError {
            throw CLIError(message: error.message)
        }
        report(change, output: output)
    }
}
