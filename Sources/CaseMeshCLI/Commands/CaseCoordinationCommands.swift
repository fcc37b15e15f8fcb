import ArgumentParser
import CaseMeshCRDT
import CaseMeshModel
import CaseMeshOperations
import CaseMeshStore
import Foundation

/// The command-line verbs of working a case together: the same operations as the
/// API's referrals, handover and tasks (``CaseOperations``).
extension CaseCommand {
    /// Runs an operation, turning its refusal into a usage error with its message.
    static func refusing<T>(_ body: () throws -> T) throws -> T {
        try CLIError.wrap {
            do { return try body() } catch let refusal as CaseOperations.Refusal {
                throw CLIError(message: refusal.message)
            }
        }
    }

    struct Refer: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Refer the case to another institution for a service (서비스 연계·의뢰).",
            discussion: """
                A consent of the case must cover the receiving institution (case share); the referral makes it \
                a participant. Prints the referral's instance.
                """)

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Option(help: "The receiving institution.") var to: String
        @Option(help: "The service asked for.") var service: String
        @Option(help: "The need it answers.") var need: String?
        @Option(help: "The consent instance that allows it (default: one that covers the receiver).") var consent:
            String?

        func run() throws {
            let store = try store.openStore()
            let record = access.entry(.write, via: "case refer")
            var generator = SystemRandomNumberGenerator()
            let made = try refusing {
                try CaseOperations(store: store).refer(
                    caseID: FieldInput.caseID(caseID), to: to, service: service, need: need, consent: consent,
                    by: record.actor, using: &generator, recording: record)
            }
            if output.json {
                emit(
                    JSONValue.object([
                        "referral": .string(made.referral), "change": .string(made.change.dot.description),
                    ]).text)
            } else {
                emit("referral \(made.referral) to \(to) recorded in \(made.change.caseID)")
            }
        }
    }

    struct Referral: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Move a referral on: accepted or declined (the receiving institution only), in-progress, done, or withdrawn (the referrer)."
        )

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The referral instance.") var referral: String
        @Argument(help: "accepted, declined, in-progress, done or withdrawn.") var status: String
        @Option(help: "Why (required to decline or withdraw).") var reason: String?

        func run() throws {
            guard let target = ReferralEvent.Status(rawValue: status), target != .requested else {
                throw CLIError(message: "the status is accepted, declined, in-progress, done or withdrawn")
            }
            let store = try store.openStore()
            let record = access.entry(.write, via: "case referral")
            let change = try refusing {
                try CaseOperations(store: store).moveReferral(
                    caseID: FieldInput.caseID(caseID), referral: referral, to: target, reason: reason, by: record.actor,
                    recording: record)
            }
            report(change, output: output)
        }
    }

    struct Handover: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Hand the case over: the lead offers it (--to), the offered institution accepts or declines it, the lead withdraws its offer.",
            discussion: """
                casemesh case handover CASE --to senior.centre    (the lead offers)
                casemesh case handover CASE --answer accepted     (the offered institution; or declined)
                casemesh case handover CASE --answer withdrawn    (the lead)
                """)

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Option(help: "The institution to offer the case to.") var to: String?
        @Option(help: "accepted, declined or withdrawn.") var answer: String?
        @Option(help: "Why.") var reason: String?

        func run() throws {
            let store = try store.openStore()
            let record = access.entry(.write, via: "case handover")
            let operations = CaseOperations(store: store)
            let change: Change
            switch (to, answer) {
            case (let to?, nil):
                change = try refusing {
                    try operations.offerHandover(
                        caseID: FieldInput.caseID(caseID), to: to, reason: reason, by: record.actor, recording: record)
                }
            case (nil, let text?):
                guard let answer = HandoverOffer.Status(rawValue: text), answer != .offered else {
                    throw CLIError(message: "--answer is accepted, declined or withdrawn")
                }
                change = try refusing {
                    try operations.answerHandover(
                        caseID: FieldInput.caseID(caseID), answer, reason: reason, by: record.actor, recording: record)
                }
            default:
                throw CLIError(message: "give --to (to offer the case) or --answer (to answer an offer)")
            }
            report(change, output: output)
        }
    }

    struct Task: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a task for an account, or move one (--status open, in-progress, done, cancelled).")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Argument(help: "The case ID.") var caseID: String
        @Argument(help: "The task's title (to add one), or its instance with --status.") var title: String
        @Option(help: "The staff account it is for.") var account: String?
        @Option(help: "The due date (YYYY-MM-DD).") var due: String?
        @Option(help: "The plan item or referral it serves (plan#p1, referral#r-…).") var link: String?
        @Option(help: "Move the task named by its instance to this status.") var status: String?

        func run() throws {
            let store = try store.openStore()
            let record = access.entry(.write, via: "case task")
            let operations = CaseOperations(store: store)
            if let status {
                let change = try refusing {
                    try operations.setTaskStatus(
                        caseID: FieldInput.caseID(caseID), task: title, status: status, recording: record)
                }
                report(change, output: output)
                return
            }
            guard let account else { throw CLIError(message: "name the account the task is for (--account)") }
            var generator = SystemRandomNumberGenerator()
            let made = try refusing {
                try operations.addTask(
                    caseID: FieldInput.caseID(caseID), title: title, account: account, institution: nil, dueAt: due,
                    linkedTo: link, using: &generator, recording: record)
            }
            emit(output.json ? JSONValue.object(["task": .string(made.task)]).text : "task \(made.task) added")
        }
    }

    struct Tasks: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "An account's open tasks across the cases held here, earliest due first.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var access: AccessOptions
        @Option(help: "The staff account.") var account: String

        func run() throws {
            let store = try store.openStore()
            let items = try refusing {
                try CaseOperations(store: store).tasks(of: account, recording: access.entry(.read, via: "case tasks"))
            }
            for item in items {
                emit(
                    output.json
                        ? JSONValue.object([
                            "case": .string(item.caseID.rawValue), "task": .string(item.task),
                            "title": item.title.map(JSONValue.string) ?? .null,
                            "dueAt": item.dueAt.map(JSONValue.string) ?? .null, "status": .string(item.status),
                        ]).text
                        : "\(item.dueAt ?? "----------")  \(item.caseID)  \(item.task)  \(item.title ?? "")  (\(item.status))"
                )
            }
        }
    }
}
