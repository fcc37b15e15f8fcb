import CaseMeshCRDT
import CaseMeshModel
import CaseMeshOperations
import CaseMeshStore
import Foundation
import Hummingbird

/// The routes of working a case together (``CaseOperations``' referrals, services,
/// handover, conferences, tasks and person links). Every one writes or reads with
/// an access entry naming the logged-in account.
extension API {
    static let coordinationRoutes: [(method: String, path: String, role: StaffRole?)] = [
        ("GET", "/api/v1/cases/{id}/referrals", .caseworker), ("POST", "/api/v1/cases/{id}/referrals", .caseworker),
        ("POST", "/api/v1/cases/{id}/referrals/{referral}/status", .caseworker),
        ("POST", "/api/v1/cases/{id}/services", .caseworker),
        ("POST", "/api/v1/cases/{id}/handover", .supervisor),
        ("POST", "/api/v1/cases/{id}/handover/answer", .supervisor),
        ("POST", "/api/v1/cases/{id}/conferences", .caseworker), ("POST", "/api/v1/cases/{id}/tasks", .caseworker),
        ("POST", "/api/v1/cases/{id}/tasks/{task}", .caseworker), ("GET", "/api/v1/tasks/mine", .caseworker),
        ("GET", "/api/v1/cases/{id}/matches", .caseworker), ("POST", "/api/v1/cases/{id}/links", .caseworker),
    ]

    func registerCoordination(on api: RouterGroup<APIRequestContext>) {
        api.get("cases/{id}/referrals") { request, context in
            let session = try authenticate(request, .caseworker)
            let snapshot = try store.read(
                try caseID(context), recording: entry(.read, session, context, via: "GET /cases/{id}/referrals"))
            return json(.ok, .object(["referrals": .array(CaseOperations.referrals(of: snapshot).map(Self.referral))]))
        }
        api.post("cases/{id}/referrals") { request, context in
            let session = try authenticate(request, .caseworker)
            let body = try await object(request, allowed: ["to", "service", "need", "consent"])
            try limit(body, ["service": 200, "need": 200, "consent": 64])
            var generator = SystemRandomNumberGenerator()
            let made = try withRefusals {
                try operations.refer(
                    caseID: try caseID(context), to: try string(body, "to"), service: try string(body, "service"),
                    need: body["need"]?.stringValue, consent: body["consent"]?.stringValue, by: who(session),
                    using: &generator, recording: entry(.write, session, context, via: "POST /cases/{id}/referrals"))
            }
            return json(
                .created, .object(["referral": .string(made.referral), "change": CaseJSON.change(made.change)]))
        }
        api.post("cases/{id}/referrals/{referral}/status") { request, context in
            let session = try authenticate(request, .caseworker)
            let body = try await object(request, allowed: ["status", "reason"])
            try limit(body, ["reason": 2000])
            let text = try string(body, "status")
            guard let status = ReferralEvent.Status(rawValue: text), status != .requested else {
                throw Problem(.unprocessableContent, "'status' is accepted, declined, in-progress, done or withdrawn")
            }
            let change = try withRefusals {
                try operations.moveReferral(
                    caseID: try caseID(context), referral: context.parameters.get("referral") ?? "", to: status,
                    reason: body["reason"]?.stringValue, by: who(session),
                    recording: entry(.write, session, context, via: "POST /cases/{id}/referrals/{referral}/status"))
            }
            return json(.created, CaseJSON.change(change))
        }
        api.post("cases/{id}/services") { request, context in
            let session = try authenticate(request, .caseworker)
            let body = try await object(
                request,
                allowed: [
                    "kind", "provider", "amountWon", "fundingSource", "referral", "startedOn", "endedOn", "status",
                ])
            var amount: Int?
            if let value = body["amountWon"] {
                guard case .number(let number) = value, (0...1_000_000_000).contains(number) else {
                    throw Problem(.unprocessableContent, "'amountWon' is a whole number of won from 0 to 1000000000")
                }
                amount = Int(number)
            }
            var generator = SystemRandomNumberGenerator()
            let made = try withRefusals {
                try operations.recordService(
                    caseID: try caseID(context), kind: try string(body, "kind"),
                    provider: body["provider"]?.stringValue,
                    amountWon: amount, fundingSource: body["fundingSource"]?.stringValue,
                    referral: body["referral"]?.stringValue, startedOn: body["startedOn"]?.stringValue,
                    endedOn: body["endedOn"]?.stringValue, status: body["status"]?.stringValue, using: &generator,
                    recording: entry(.write, session, context, via: "POST /cases/{id}/services"))
            }
            return json(.created, .object(["service": .string(made.service), "change": CaseJSON.change(made.change)]))
        }
        api.post("cases/{id}/handover") { request, context in
            let session = try authenticate(request, .supervisor)
            let body = try await object(request, allowed: ["to", "reason"])
            try limit(body, ["reason": 500])
            let change = try withRefusals {
                try operations.offerHandover(
                    caseID: try caseID(context), to: try string(body, "to"), reason: body["reason"]?.stringValue,
                    by: who(session), recording: entry(.write, session, context, via: "POST /cases/{id}/handover"))
            }
            return json(.created, CaseJSON.change(change))
        }
        api.post("cases/{id}/handover/answer") { request, context in
            let session = try authenticate(request, .supervisor)
            let body = try await object(request, allowed: ["answer", "reason"])
            try limit(body, ["reason": 500])
            guard let answer = HandoverOffer.Status(rawValue: try string(body, "answer")), answer != .offered else {
                throw Problem(.unprocessableContent, "'answer' is accepted, declined or withdrawn")
            }
            let change = try withRefusals {
                try operations.answerHandover(
                    caseID: try caseID(context), answer, reason: body["reason"]?.stringValue, by: who(session),
                    recording: entry(.write, session, context, via: "POST /cases/{id}/handover/answer"))
            }
            return json(.created, CaseJSON.change(change))
        }
        api.post("cases/{id}/conferences") { request, context in
            let session = try authenticate(request, .caseworker)
            let body = try await object(request, allowed: ["heldAt", "institutions", "people", "decisions", "approve"])
            var generator = SystemRandomNumberGenerator()
            let made = try withRefusals {
                try operations.recordConference(
                    caseID: try caseID(context), heldAt: try string(body, "heldAt"),
                    institutions: try optionalStrings(body, "institutions") ?? [],
                    people: try optionalStrings(body, "people") ?? [],
                    decisions: try optionalStrings(body, "decisions") ?? [],
                    approving: try optionalStrings(body, "approve") ?? [], using: &generator,
                    recording: entry(.write, session, context, via: "POST /cases/{id}/conferences"))
            }
            return json(
                .created,
                .object([
                    "conference": .string(made.conference),
                    "planVersion": made.planVersion.map { .number(Int64($0)) } ?? .null,
                    "change": CaseJSON.change(made.change),
                ]))
        }
        api.post("cases/{id}/tasks") { request, context in
            let session = try authenticate(request, .caseworker)
            let body = try await object(request, allowed: ["title", "account", "institution", "dueAt", "linkedTo"])
            var generator = SystemRandomNumberGenerator()
            let made = try withRefusals {
                try operations.addTask(
                    caseID: try caseID(context), title: try string(body, "title"),
                    account: body["account"]?.stringValue ?? session.account.username,
                    institution: body["institution"]?.stringValue, dueAt: body["dueAt"]?.stringValue,
                    linkedTo: body["linkedTo"]?.stringValue, using: &generator,
                    recording: entry(.write, session, context, via: "POST /cases/{id}/tasks"))
            }
            return json(.created, .object(["task": .string(made.task), "change": CaseJSON.change(made.change)]))
        }
        api.post("cases/{id}/tasks/{task}") { request, context in
            let session = try authenticate(request, .caseworker)
            let body = try await object(request, allowed: ["status"])
            let change = try withRefusals {
                try operations.setTaskStatus(
                    caseID: try caseID(context), task: context.parameters.get("task") ?? "",
                    status: try string(body, "status"),
                    recording: entry(.write, session, context, via: "POST /cases/{id}/tasks/{task}"))
            }
            return json(.created, CaseJSON.change(change))
        }
        api.get("tasks/mine") { request, context in
            let session = try authenticate(request, .caseworker)
            let items = try operations.tasks(
                of: session.account.username, recording: entry(.read, session, context, via: "GET /tasks/mine"))
            return json(.ok, .object(["tasks": .array(items.map(Self.task))]))
        }
        api.get("cases/{id}/matches") { request, context in
            let session = try authenticate(request, .caseworker)
            let caseID = try caseID(context)
            let matches = try operations.personMatches(
                caseID: caseID, recording: entry(.read, session, context, via: "GET /cases/{id}/matches"))
            let linked = CaseOperations.links(of: try store.snapshot(of: caseID))
            return json(
                .ok,
                .object([
                    "matches": .array(
                        matches.map {
                            .object([
                                "person": .string($0.person), "case": .string($0.otherCase.rawValue),
                                "otherPerson": .string($0.otherPerson), "basis": .string($0.basis),
                                "linked": .bool(linked.contains($0.otherCase)),
                            ])
                        }),
                    "linked": .array(linked.map { .string($0.rawValue) }),
                ]))
        }
        api.post("cases/{id}/links") { request, context in
            let session = try authenticate(request, .caseworker)
            let body = try await object(request, allowed: ["case", "action", "reason"])
            try limit(body, ["reason": 500])
            let action = body["action"]?.stringValue ?? "link"
            guard action == "link" || action == "unlink" else {
                throw Problem(.unprocessableContent, "'action' is link or unlink")
            }
            let other: CaseID
            do { other = try CaseID(try string(body, "case")) } catch let error as CRDTError {
                throw Problem(.unprocessableContent, error.message)
            }
            let changes = try withRefusals {
                try operations.link(
                    caseID: try caseID(context), to: other, unlink: action == "unlink",
                    reason: body["reason"]?.stringValue, by: who(session),
                    recording: entry(.write, session, context, via: "POST /cases/{id}/links"))
            }
            return json(.created, .object(["changes": .array(changes.map(CaseJSON.change))]))
        }
    }

    /// The account as stage and referral events name it (`이수진 (lee)`).
    func who(_ session: StaffSession) -> String { "\(session.account.displayName) (\(session.account.username))" }

    /// Refuses a text member longer than its bound (characters).
    func limit(_ body: JSONValue, _ bounds: [String: Int]) throws {
        for (name, bound) in bounds {
            if let text = body[name]?.stringValue, text.count > bound {
                throw Problem(.unprocessableContent, "'\(name)' is at most \(bound) characters")
            }
        }
    }

    static func referral(_ referral: CaseOperations.Referral) -> JSONValue {
        func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        return .object([
            "referral": .string(referral.instance), "from": text(referral.from), "to": text(referral.to),
            "service": text(referral.service), "need": text(referral.need), "consent": text(referral.consent),
            "status": text(referral.status?.rawValue), "conflict": .array(referral.conflict.map(JSONValue.string)),
            "events": .array(
                referral.events.map { event in
                    .object([
                        "status": .string(event.status.rawValue), "institution": .string(event.institution),
                        "by": .string(event.by), "reason": text(event.reason),
                        "at": .string(CaseRendering.time(millis: event.atMillis)),
                    ])
                }),
        ])
    }

    static func task(_ item: CaseOperations.TaskItem) -> JSONValue {
        func text(_ value: String?) -> JSONValue { value.map(JSONValue.string) ?? .null }
        return .object([
            "case": .string(item.caseID.rawValue), "caseTitle": text(item.caseTitle), "task": .string(item.task),
            "title": text(item.title), "dueAt": text(item.dueAt), "status": .string(item.status),
            "linkedTo": text(item.linkedTo),
        ])
    }
}
