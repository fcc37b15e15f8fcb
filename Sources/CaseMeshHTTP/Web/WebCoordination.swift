import CaseMeshCRDT
import CaseMeshModel
import CaseMeshOperations
import CaseMeshStore
import Foundation
import HTTPTypes
import Hummingbird

/// The case page's referrals and handover, with the actions this account's
/// institution may take on each (the operations refuse the rest anyway), and the
/// account's own tasks across cases.
extension WebApp {
    func registerCoordination(on router: Router<APIRequestContext>) {
        router.post("/cases/{id}/refer") { request, context in await handle(request, context, refer) }
        router.post("/cases/{id}/referrals/{referral}") { request, context in
            await handle(request, context, moveReferral)
        }
        router.post("/cases/{id}/handover") { request, context in await handle(request, context, handover) }
        router.get("/tasks") { request, context in await handle(request, context, tasksPage) }
        router.post("/cases/{id}/conferences") { request, context in await handle(request, context, conference) }
        router.get("/cases/{id}/matches") { request, context in await handle(request, context, matchesPage) }
        router.post("/cases/{id}/links") { request, context in await handle(request, context, link) }
    }

    /// The template data of a case's referrals and handover.
    func coordination(_ snapshot: CaseSnapshot, account: StaffAccount, _ t: WebCatalogue) -> [String: Any] {
        let own = store.replicaID.institution.rawValue
        var referrals: [[String: Any]] = []
        for referral in CaseOperations.referrals(of: snapshot) {
            let status = referral.status
            var actions: [[String: Any]] = []
            func offer(_ next: ReferralEvent.Status, needsReason: Bool = false) {
                actions.append([
                    "code": next.rawValue, "label": t["referral_do_\(next.rawValue)"], "needsReason": needsReason,
                    "instance": referral.instance,
                ])
            }
            if referral.conflict.isEmpty {
                if referral.to == own {
                    if status == .requested {
                        offer(.accepted)
                        offer(.declined, needsReason: true)
                    }
                    if status == .accepted { offer(.inProgress) }
                    if status == .accepted || status == .inProgress { offer(.done) }
                }
                if referral.from == own, let status, !status.isFinal { offer(.withdrawn, needsReason: true) }
            }
            referrals.append([
                "instance": referral.instance, "to": referral.to.map(institutionName) ?? "—",
                "from": referral.from.map(institutionName) ?? "—", "service": referral.service ?? "—",
                "need": referral.need ?? "",
                "status": referral.conflict.isEmpty
                    ? t["referral_status_\(status?.rawValue ?? "requested")"]
                    : referral.conflict.map { t["referral_status_\($0)"] }.joined(separator: " / "),
                "conflict": !referral.conflict.isEmpty, "actions": actions, "hasActions": !actions.isEmpty,
            ])
        }
        var data: [String: Any] = ["referrals": referrals, "has_referrals": !referrals.isEmpty]
        // The conference form: who takes part, and the plan items it may approve.
        data["conferenceInstitutions"] = participants(snapshot).map { ["code": $0, "name": institutionName($0)] }
        let items = Set(snapshot.fields.keys.filter { $0.entity == "plan" }.map(\.instance)).sorted()
        data["planItems"] = items.map { item in
            ["code": item, "name": text(snapshot, "plan#\(item).goal").map { "\(item): \($0)" } ?? item]
        }
        data["has_planItems"] = !items.isEmpty
        let others = participants(snapshot).filter { $0 != own }
        data["referTargets"] = others.map { ["code": $0, "name": institutionName($0)] }
        data["canRefer"] = !others.isEmpty
        // The handover: the standing offer, what this institution may do about it.
        let lead = text(snapshot, "leadInstitution")
        do {
            if let offer = try CaseOperations.handoverOffer(of: snapshot), offer.status == .offered {
                data["handoverOffer"] = t.format(
                    "handover_offered", ["from": institutionName(offer.from), "to": institutionName(offer.to)])
                if offer.to == own, account.role >= .supervisor { data["canAnswerHandover"] = true }
                if lead == own, account.role >= .supervisor { data["canWithdrawHandover"] = true }
            } else if lead == own, account.role >= .supervisor, !others.isEmpty {
                data["canOfferHandover"] = true
            }
        } catch {
            data["handoverConflict"] = t["handover_conflict"]
        }
        return data
    }

    /// A timeline entry of the workflow's own logs, in words.
    func workflowText(_ field: FieldKey, _ text: String, _ t: WebCatalogue) -> (body: String, author: String?)? {
        if field.entity == "referral", field.field == "events", let event = ReferralEvent(text: text, atMillis: 0) {
            let words = t.format(
                "referral_event", ["referral": field.instance, "status": t["referral_status_\(event.status.rawValue)"]])
            return (words + (event.reason.map { " — \($0)" } ?? ""), event.by)
        }
        if field == CaseField.handoverEvents, let offer = HandoverOffer(text: text) {
            return (
                t.format(
                    "handover_event_\(offer.status.rawValue)",
                    ["from": institutionName(offer.from), "to": institutionName(offer.to)])
                    + (offer.reason.map { " — \($0)" } ?? ""), offer.by
            )
        }
        return nil
    }

    func refer(_ call: Call) async throws -> Response {
        let form = try await checkedForm(call)
        let caseID = try caseID(call)
        let account = try call.account
        var generator = SystemRandomNumberGenerator()
        _ = try CaseOperations(store: store).refer(
            caseID: caseID, to: form.first("to") ?? "", service: form.first("service") ?? "", need: form.first("need"),
            consent: nil, by: "\(account.displayName) (\(account.username))", using: &generator,
            recording: try entry(.write, call, via: "POST /cases/{id}/refer"))
        return WebHeaders.redirect("/cases/\(caseID)?done=referral#referrals")
    }

    func moveReferral(_ call: Call) async throws -> Response {
        let form = try await checkedForm(call)
        let caseID = try caseID(call)
        let account = try call.account
        guard let status = form.first("status").flatMap(ReferralEvent.Status.init(rawValue:)) else {
            throw WebFailure(.unprocessableContent, call.t["referral_bad_status"])
        }
        try CaseOperations(store: store).moveReferral(
            caseID: caseID, referral: call.context.parameters.get("referral") ?? "", to: status,
            reason: form.first("reason"), by: "\(account.displayName) (\(account.username))",
            recording: try entry(.write, call, via: "POST /cases/{id}/referrals/{referral}"))
        return WebHeaders.redirect("/cases/\(caseID)?done=referral#referrals")
    }

    func handover(_ call: Call) async throws -> Response {
        let form = try await checkedForm(call)
        let caseID = try caseID(call)
        let account = try require(call, .supervisor)
        let by = "\(account.displayName) (\(account.username))"
        let record = try entry(.write, call, via: "POST /cases/{id}/handover")
        let operations = CaseOperations(store: store)
        if let answer = form.first("answer") {
            guard let status = HandoverOffer.Status(rawValue: answer), status != .offered else {
                throw WebFailure(.unprocessableContent, call.t["handover_bad_answer"])
            }
            try operations.answerHandover(
                caseID: caseID, status, reason: form.first("reason"), by: by, recording: record)
        } else {
            try operations.offerHandover(
                caseID: caseID, to: form.first("to") ?? "", reason: form.first("reason"), by: by, recording: record)
        }
        return WebHeaders.redirect("/cases/\(caseID)?done=handover#referrals")
    }

    /// "내 할 일": the logged-in account's open tasks across the cases held here.
    func tasksPage(_ call: Call) async throws -> Response {
        let t = call.t
        let account = try call.account
        let items = try CaseOperations(store: store).tasks(
            of: account.username, recording: try entry(.read, call, via: "GET /tasks"))
        let today = CalendarDay(millis: store.nowMillis).description
        let rows: [[String: Any]] = items.map { item in
            [
                "case": item.caseID.rawValue, "caseTitle": item.caseTitle ?? t["untitled"], "title": item.title ?? "—",
                "due": item.dueAt ?? "—", "overdue": (item.dueAt ?? "9999") < today,
                "status": t["task_status_\(item.status)"], "linkedTo": item.linkedTo ?? "",
            ]
        }
        return render(
            call, "tasks", ["tasks": rows, "has_tasks": !rows.isEmpty], title: t["tasks_title"], page: "tasks")
    }

    func conference(_ call: Call) async throws -> Response {
        let form = try await checkedForm(call)
        let caseID = try caseID(call)
        // The browser's local time is Seoul's (datetime-local has no zone).
        var heldAt = form.first("heldAt") ?? ""
        if heldAt.count == 16 { heldAt += ":00+09:00" }
        let people = (form.first("people") ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
        let decisions = (form.first("decisions") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        var generator = SystemRandomNumberGenerator()
        _ = try CaseOperations(store: store).recordConference(
            caseID: caseID, heldAt: heldAt, institutions: form.all("institution"), people: people,
            decisions: decisions.isEmpty ? [] : [decisions], approving: form.all("approve"), using: &generator,
            recording: try entry(.write, call, via: "POST /cases/{id}/conferences"))
        return WebHeaders.redirect("/cases/\(caseID)?done=conference#referrals")
    }

    /// Other cases that may be about the same person, with link and unlink.
    func matchesPage(_ call: Call) async throws -> Response {
        let t = call.t
        let caseID = try caseID(call)
        let operations = CaseOperations(store: store)
        let found = try operations.personMatches(
            caseID: caseID, recording: try entry(.read, call, via: "GET /cases/{id}/matches"))
        let snapshot = try store.snapshot(of: caseID)
        let linked = CaseOperations.links(of: snapshot)
        func title(_ other: CaseID) -> String {
            ((try? store.snapshot(of: other)).flatMap { text($0, "title") }) ?? t["untitled"]
        }
        var seen: Set<CaseID> = []
        var rows: [[String: Any]] = []
        for match in found where seen.insert(match.otherCase).inserted {
            let isLinked = linked.contains(match.otherCase)
            rows.append([
                "case": match.otherCase.rawValue, "caseTitle": title(match.otherCase),
                "basis": t["basis_\(match.basis)"],
                "action": isLinked ? "unlink" : "link", "actionLabel": t[isLinked ? "unlink_do" : "link_do"],
                "id": caseID.rawValue,
            ])
        }
        let linkedRows = linked.map { ["case": $0.rawValue, "caseTitle": title($0)] }
        return render(
            call, "matches",
            [
                "id": caseID.rawValue, "caseTitle": text(snapshot, "title") ?? t["untitled"], "matches": rows,
                "has_matches": !rows.isEmpty, "linked": linkedRows, "has_linked": !linkedRows.isEmpty,
            ], title: t["matches_title"], page: "case", caseID: caseID.rawValue, flash: flash(call))
    }

    func link(_ call: Call) async throws -> Response {
        let form = try await checkedForm(call)
        let caseID = try caseID(call)
        let account = try call.account
        guard let other = form.first("case").flatMap({ try? CaseID($0) }) else {
            throw WebFailure(.unprocessableContent, call.t["not_found"])
        }
        _ = try CaseOperations(store: store).link(
            caseID: caseID, to: other, unlink: form.first("action") == "unlink", reason: nil,
            by: "\(account.displayName) (\(account.username))",
            recording: try entry(.write, call, via: "POST /cases/{id}/links"))
        return WebHeaders.redirect("/cases/\(caseID)/matches?done=link")
    }
}
