import ArgumentParser
import CaseMeshCRDT
import CaseMeshModel
import CaseMeshOperations
import CaseMeshStore
import Foundation

struct CaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "case", abstract: "Open, edit and read cases.",
        subcommands: [
            Open.self, Set.self, Add.self, Remove.self, Note.self, Stage.self, Deadlines.self, Share.self,
            Withdraw.self, Identify.self, FindPerson.self, Refer.self, Referral.self, Handover.self, Task.self,
            Tasks.self, Show.self, List.self,
        ])
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
        @OptionGroup var access: AccessOptions

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
            let change = try CLIError.wrap {
                try store.openCase(ops: ops, using: &generator, recording: access.entry(.open, via: "case open"))
            }
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
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The field: field, entity.field or entity#instance.field.") var field: String
        @Argument(help: "The new value.") var value: String

        func run() throws {
            let store = try store.openStore()
            let op = try FieldInput.assign(field, value, schema: store.schema)
            let change = try CLIError.wrap {
                try store.write(
                    caseID: FieldInput.caseID(caseID), ops: [op],
                    recording: access.entry(.write, via: "case \(Self._commandName)"))
            }
            report(change, output: output)
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an element to a set field (e.g. participants, tags, report.crisisSignals).")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The set field.") var field: String
        @Argument(help: "The element to add.") var element: String
        @Option(help: "For participants: an institution no node here has heard of yet, that you vouch for.")
        var allowNewInstitution: [String] = []

        func run() throws {
            let store = try store.openStore()
            let op = try FieldInput.checked(.insert(FieldInput.key(field), element), schema: store.schema)
            if op.field == CaseField.participants {
                let allowed = try Swift.Set(
                    allowNewInstitution.map { text in try CLIError.wrap { try InstitutionID(text) } })
                try CLIError.wrap { try store.requireKnown([InstitutionID(element)], allowingNew: allowed) }
            }
            let change = try CLIError.wrap {
                try store.write(
                    caseID: FieldInput.caseID(caseID), ops: [op],
                    recording: access.entry(.write, via: "case \(Self._commandName)"))
            }
            report(change, output: output)
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an element from a set field.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The set field.") var field: String
        @Argument(help: "The element to remove.") var element: String

        func run() throws {
            let store = try store.openStore()
            let op = try FieldInput.checked(.remove(FieldInput.key(field), element), schema: store.schema)
            let change = try CLIError.wrap {
                try store.write(
                    caseID: FieldInput.caseID(caseID), ops: [op],
                    recording: access.entry(.write, via: "case \(Self._commandName)"))
            }
            report(change, output: output)
        }
    }

    struct Share: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Share a case with institutions under a consent or a statute.",
            discussion: """
                Adds the institutions to the case's participants and records the consent entity (consent#ID) \
                that allows it: its basis, purposes, data categories, recipients and end. A node sends the case \
                to an institution only while such a consent covers it (the lead institution needs none); \
                'sensitive' and 'unique-id' data need those categories too.
                """)

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The institutions to share with.") var institutions: [String]

        func validate() throws {
            guard !institutions.isEmpty else { throw ValidationError("name at least one institution") }
        }
        @Option(help: "The consent entity's instance (default: one per first recipient, e.g. senior-centre).")
        var consent: String?
        @Option(help: "'consent', or the statute that allows sharing.") var basis = "consent"
        @Option(help: "Data categories covered, comma-separated: general, sensitive, unique-id.")
        var categories = "general"
        @Option(help: "Purposes, comma-separated.") var purposes = "case-management"
        @Option(help: "When the consent ends (ISO 8601 date-time, e.g. 2027-11-23T00:00:00+09:00).")
        var until: String?
        @Option(help: "Whose data: a person instance (p1) or household.") var subject = "household"
        @Option(help: "Who granted it: subject, guardian or legal-representative.") var grantor = "subject"
        @Option(
            help:
                "An institution no node here has heard of yet, that you vouch for (repeatable; until the consortium directory exists)."
        )
        var allowNewInstitution: [String] = []

        func run() throws {
            let store = try store.openStore()
            let categories = try categories.split(separator: ",").map { text in
                guard let category = DataCategory(rawValue: String(text)) else {
                    throw CLIError(message: "unknown data category '\(text)': use general, sensitive or unique-id")
                }
                return category
            }
            let grant = ConsentGrant(
                instance: try consent
                    ?? ConsentGrant.instance(for: CLIError.wrap { try InstitutionID(institutions[0]) }),
                recipients: try institutions.map { text in try CLIError.wrap { try InstitutionID(text) } },
                basis: basis, categories: categories, purposes: purposes.split(separator: ",").map(String.init),
                validUntil: until, subject: subject, grantor: grantor)
            let allowed = try Swift.Set(
                allowNewInstitution.map { text in try CLIError.wrap { try InstitutionID(text) } })
            let change = try CLIError.wrap {
                try store.share(
                    FieldInput.caseID(caseID), grant: grant, allowingNew: allowed,
                    recording: access.entry(.write, via: "case \(Self._commandName)"))
            }
            report(change, output: output)
        }
    }

    struct Withdraw: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Withdraw a consent from an institution.",
            discussion: """
                Removes the institution from the consent's recipients (a withdrawal beats a concurrent grant). \
                Its nodes stop receiving the case and purge it at their next sync, keeping only a tombstone.
                """)

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The institution.") var institution: String
        @Option(help: "The consent entity's instance (default: the one named after the institution).")
        var consent: String?

        func run() throws {
            let store = try store.openStore()
            let change = try CLIError.wrap {
                try store.withdraw(
                    FieldInput.caseID(caseID), from: InstitutionID(institution), consent: consent,
                    recording: access.entry(.write, via: "case \(Self._commandName)"))
            }
            report(change, output: output)
        }
    }

    struct Identify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a person's resident registration number as a keyed hash (read from standard input).",
            discussion: """
                The number is read from standard input (never from the command line, where it would stay in \
                shell history and process lists), hashed with HMAC-SHA-256 under the consortium secret, and only \
                the hash is written, to person#ID.rrnHash: it is what replicates, and only to institutions whose \
                consent covers unique identifiers.
                """)

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The person's instance in the case (e.g. p1).") var person: String
        @Option(help: "The file holding the consortium secret.") var secretFile: String

        func run() throws {
            let store = try store.openStore()
            let hasher = try CLIError.wrap { try ResidentNumberHasher(secretFile: secretFile) }
            let number = readLine(strippingNewline: true) ?? ""
            let change = try CLIError.wrap {
                try CaseOperations(store: store).identify(
                    caseID: FieldInput.caseID(caseID), person: person, number: number, hasher: hasher,
                    recording: access.entry(.write, via: "case \(Self._commandName)"))
            }
            report(change, output: output)
        }
    }

    struct FindPerson: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "find-person",
            abstract: "Find the cases that hold a person, by resident registration number (read from standard input).",
            discussion: "Compares keyed hashes only: the number is neither stored nor sent.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Option(help: "The file holding the consortium secret.") var secretFile: String

        func run() throws {
            let store = try store.openStore()
            let hasher = try CLIError.wrap { try ResidentNumberHasher(secretFile: secretFile) }
            let number = readLine(strippingNewline: true) ?? ""
            let found = try CLIError.wrap {
                try CaseOperations(store: store).findPerson(
                    number: number, hasher: hasher, recording: access.entry(.read, via: "case find-person"))
            }.map { (caseID: $0.caseID.rawValue, person: $0.person) }
            if output.json {
                emit(
                    JSONValue.array(
                        found.map { .object(["case": .string($0.caseID), "person": .string($0.person)]) }
                    ).text)
            } else if found.isEmpty {
                emit("no case holds this person")
            } else {
                for item in found { emit("\(item.caseID)  person#\(item.person)") }
            }
        }
    }

    struct Note: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Append a note to the case (notes are never edited).")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The note.") var text: String

        func run() throws {
            let store = try store.openStore()
            let op = try FieldInput.checked(
                .append(CaseField.notes, text), schema: store.schema)
            let change = try CLIError.wrap {
                try store.write(
                    caseID: FieldInput.caseID(caseID), ops: [op],
                    recording: access.entry(.write, via: "case \(Self._commandName)"))
            }
            report(change, output: output)
        }
    }

    struct Stage: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move the case to another stage, recorded as a stage event (who, from, to, why).",
            discussion: """
                Stages: discovery, intake, assessment, conference, planning, provision, monitoring, closed, \
                follow-up. Closing while a service is active, and reopening a closed case, need --reason.
                """)

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The stage to move it to.") var stage: String
        @Option(help: "Why (required to close with an active service or to reopen).") var reason: String?

        func run() throws {
            let store = try store.openStore()
            let record = access.entry(.write, via: "case \(Self._commandName)")
            let change = try CLIError.wrap {
                do {
                    return try CaseOperations(store: store).moveStage(
                        caseID: FieldInput.caseID(caseID), to: stage, reason: reason, by: record.actor,
                        recording: record)
                } catch let refusal as CaseOperations.Refusal {
                    throw CLIError(message: refusal.message)
                }
            }
            report(change, output: output)
        }
    }

    struct Deadlines: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the case's statutory deadlines (working days under the Korean holiday calendar).")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String

        func run() throws {
            let store = try store.openStore()
            let snapshot = try CLIError.wrap {
                try store.read(FieldInput.caseID(caseID), recording: access.entry(.read, via: "case deadlines"))
            }
            let deadlines = CaseWorkflow.deadlines(of: snapshot, now: SystemWallClock().nowMillis())
            func status(_ deadline: Deadline) -> String {
                switch deadline.status {
                case .met(let at, let onTime): (onTime ? "met " : "met late ") + CaseRendering.time(millis: at)
                case .open: "open"
                case .overdue: "OVERDUE"
                case .reminder: "reminder"
                case .closedBefore: "not reached before closure"
                }
            }
            if output.json {
                emit(
                    JSONValue.array(
                        deadlines.map {
                            .object([
                                "name": .string($0.name), "due": .string($0.due.description),
                                "status": .string(status($0)),
                            ])
                        }
                    ).text)
                return
            }
            if deadlines.isEmpty { emit("no deadline has started (they start at intake)") }
            for deadline in deadlines {
                emit(
                    "\(deadline.name.padding(toLength: 11, withPad: " ", startingAt: 0)) due \(deadline.due)  \(status(deadline))"
                )
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a case as this replica holds it.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String

        func run() throws {
            let store = try store.openStore()
            let snapshot = try CLIError.wrap {
                try store.read(FieldInput.caseID(caseID), recording: access.entry(.read, via: "case show"))
            }
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
        @OptionGroup var access: AccessOptions

        func run() throws {
            let store = try store.openStore()
            // A case withdrawn from this institution is not listed, though it is held
            // until its own edits have gone out.
            let summaries = try CLIError.wrap {
                try store.caseSummaries(matching: CaseListFilter(), limit: Int.max, offset: 0).cases
            }
            try access.record(store, summaries.map(\.caseID), .read, via: "case list")
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
