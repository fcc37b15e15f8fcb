import ArgumentParser
import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
import Foundation

struct CaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "case", abstract: "Open, edit and read cases.",
        subcommands: [Open.self, Set.self, Add.self, Remove.self, Note.self, Show.self, List.self])
}

/// Turns what a user typed into schema-checked field operations.
enum FieldInput {
    static func key(_ text: String) throws -> FieldKey { try CLIError.wrap { try FieldKey(parsing: text) } }

    static func assign(_ field: String, _ value: String, schema: CaseSchema) throws -> FieldOperation {
        try CLIError.wrap {
            let key = try FieldKey(parsing: field)
            let op = FieldOperation.assign(key, try schema.parseValue(value, for: key))
            try schema.validate(op)
            return op
        }
    }

    static func checked(_ op: FieldOperation, schema: CaseSchema) throws -> FieldOperation {
        try CLIError.wrap { try schema.validate(op) }
        return op
    }

    static func caseID(_ text: String) throws -> CaseID { try CLIError.wrap { try CaseID(text) } }

    static func nowText() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date())
    }
}

extension CaseCommand {
    struct Open: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open a new case; prints its ID.",
            discussion: "Your institution becomes the first participant and the lead institution.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions

        @Option(name: .customLong("field"), help: "A field to set, name=value (repeatable; sets add the value).")
        var fields: [String] = []

        func run() throws {
            let store = try store.openStore()
            var ops: [FieldOperation] = []
            var given: Swift.Set<FieldKey> = []
            for assignment in fields {
                guard let equals = assignment.firstIndex(of: "=") else {
                    throw CLIError(message: "--field takes name=value, got '\(assignment)'")
                }
                let key = try FieldInput.key(String(assignment[..<equals]))
                let value = String(assignment[assignment.index(after: equals)...])
                given.insert(key)
                let kind = try CLIError.wrap { try store.schema.definition(of: key).kind }
                switch kind {
                case .register: ops.append(try FieldInput.assign(key.description, value, schema: store.schema))
                case .set: ops.append(try FieldInput.checked(.insert(key, value), schema: store.schema))
                case .log: ops.append(try FieldInput.checked(.append(key, value), schema: store.schema))
                }
            }
            for (name, value) in [("stage", "discovery"), ("openedAt", FieldInput.nowText())]
            where !given.contains(FieldKey(entity: "case", field: name)) {
                ops.insert(.assign(FieldKey(entity: "case", field: name), .string(value)), at: 0)
            }
            var generator = SystemRandomNumberGenerator()
            let change = try CLIError.wrap { try store.openCase(ops: ops, using: &generator) }
            if output.json {
                emit(JSONValue.object(["case": .string(change.caseID.rawValue)]).text)
            } else {
                emit(change.caseID.rawValue)
            }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a single-valued field (e.g. stage, riskLevel, person#p1.name).")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The field: field, entity.field or entity#instance.field.") var field: String
        @Argument(help: "The new value.") var value: String

        func run() throws {
            let store = try store.openStore()
            let op = try FieldInput.assign(field, value, schema: store.schema)
            let change = try CLIError.wrap { try store.write(caseID: FieldInput.caseID(caseID), ops: [op]) }
            report(change, output: output)
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an element to a set field (e.g. participants, tags, report.crisisSignals).")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The set field.") var field: String
        @Argument(help: "The element to add.") var element: String

        func run() throws {
            let store = try store.openStore()
            let op = try FieldInput.checked(.insert(FieldInput.key(field), element), schema: store.schema)
            let change = try CLIError.wrap { try store.write(caseID: FieldInput.caseID(caseID), ops: [op]) }
            report(change, output: output)
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an element from a set field.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The set field.") var field: String
        @Argument(help: "The element to remove.") var element: String

        func run() throws {
            let store = try store.openStore()
            let op = try FieldInput.checked(.remove(FieldInput.key(field), element), schema: store.schema)
            let change = try CLIError.wrap { try store.write(caseID: FieldInput.caseID(caseID), ops: [op]) }
            report(change, output: output)
        }
    }

    struct Note: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Append a note to the case (notes are never edited).")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The note.") var text: String

        func run() throws {
            let store = try store.openStore()
            let op = try FieldInput.checked(
                .append(FieldKey(entity: "case", field: "notes"), text), schema: store.schema)
            let change = try CLIError.wrap { try store.write(caseID: FieldInput.caseID(caseID), ops: [op]) }
            report(change, output: output)
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a case as this replica holds it.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The case ID.") var caseID: String

        func run() throws {
            let store = try store.openStore()
            let snapshot = try CLIError.wrap { try store.snapshot(of: FieldInput.caseID(caseID)) }
            emit(
                output.json
                    ? CaseRendering.json(snapshot, schema: store.schema).text
                    : CaseRendering.text(snapshot, schema: store.schema))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the cases this replica holds.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let store = try store.openStore()
            let summaries = try CLIError.wrap { try store.caseSummaries() }
            if output.json {
                emit(
                    JSONValue.array(
                        summaries.map { summary in
                            .object([
                                "case": .string(summary.caseID.rawValue),
                                "title": summary.title.map(JSONValue.string) ?? .null,
                                "stage": summary.stage.map(JSONValue.string) ?? .null,
                                "riskLevel": summary.riskLevel.map(JSONValue.string) ?? .null,
                                "participants": .array(summary.participants.map(JSONValue.string)),
                                "openConflicts": .number(Int64(summary.openConflicts)),
                                "changes": .number(Int64(summary.changeCount)),
                            ])
                        }
                    ).text)
            } else if summaries.isEmpty {
                emit("no cases")
            } else {
                for summary in summaries {
                    let conflicts = summary.openConflicts > 0 ? "  \(summary.openConflicts) conflict(s)" : ""
                    emit(
                        "\(summary.caseID)  \(summary.stage ?? "-")  risk \(summary.riskLevel ?? "-")  \(summary.title ?? "")  [\(summary.participants.joined(separator: ", "))]\(conflicts)"
                    )
                }
            }
        }
    }
}

/// Reports a committed local change.
func report(_ change: Change, output: OutputOptions) {
    if output.json {
        emit(
            JSONValue.object(["case": .string(change.caseID.rawValue), "change": .string(change.dot.description)]).text)
    } else {
        emit("recorded \(change.caseID) change \(change.seq)")
    }
}
