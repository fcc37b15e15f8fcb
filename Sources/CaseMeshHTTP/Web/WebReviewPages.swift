import CaseMeshCRDT
import CaseMeshModel
import CaseMeshNode
import CaseMeshOperations
import CaseMeshStore
import Foundation
import Hummingbird

/// Conflict review, sharing and sync status.
extension WebApp {
    // MARK: 충돌 검토

    /// Every open conflict (or one case's), each value side by side with the
    /// institution, node and time that wrote it; the provisional winner (what every
    /// node shows until someone decides) marked.
    func conflictsPage(_ call: Call) async throws -> Response {
        let t = call.t
        let account = try call.account
        let only = call.context.parameters.get("id") == nil ? nil : try caseID(call)
        var all = try store.openConflicts().filter { try store.withdrawal(of: $0.caseID) == nil }
        if let only { all = all.filter { $0.caseID == only } }
        let cases = Array(Set(all.map(\.caseID))).sorted()
        try store.recordAccess(to: cases, try entry(.read, call, via: "GET /conflicts"))
        var titles: [CaseID: String] = [:]
        for caseID in cases { titles[caseID] = text(try store.snapshot(of: caseID), "title") ?? t["untitled"] }
        var items: [[String: Any]] = []
        for (index, conflict) in all.enumerated() {
            let definition = try? schema.definition(of: conflict.field)
            let values = conflict.siblings.enumerated().map { position, sibling -> [String: Any] in
                let others = conflict.siblings.enumerated().filter { $0.offset != position }
                    .map { $0.element.dot.origin.institution.rawValue }
                return [
                    "value": display(sibling.value, definition, t), "raw": sibling.value.description,
                    "institution": institutionName(sibling.dot.origin.institution.rawValue),
                    "node": sibling.dot.origin.rawValue,
                    "at": t.time(millis: sibling.hlc.physical), "provisional": position == 0,
                    "seen": t.format(
                        "seen_concurrent", ["others": Array(Set(others)).sorted().joined(separator: ", ")]),
                    "anchor": "\(index)-\(position)",
                ]
            }
            items.append([
                "caseID": conflict.caseID.rawValue, "caseTitle": titles[conflict.caseID] ?? "",
                "field": conflict.field.description, "label": t.field(conflict.field), "values": values,
                "anchor": "\(index)",
            ])
        }
        var data: [String: Any] = ["conflicts": items, "canResolve": account.role >= .supervisor]
        if let only { data["caseTitle"] = titles[only] ?? only.rawValue }
        return render(
            call, "conflicts", data, title: t["conflicts_title"], page: "conflicts",
            caseID: only?.rawValue ?? "", flash: flash(call))
    }

    /// A supervisor's decision: the chosen value or a new one, written as a change
    /// like any other (it supersedes every value it saw).
    func resolve(_ call: Call) async throws -> Response {
        let form = try await checkedForm(call)
        _ = try require(call, .supervisor)
        let caseID = try caseID(call)
        let typed = (form.first("newValue") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard let value = typed.isEmpty ? form.first("value") : typed, let field = form.first("field") else {
            throw WebFailure(.unprocessableContent, call.t["choose_value"])
        }
        _ = try CaseOperations(store: store).resolve(
            caseID: caseID, field: field, value: value,
            recording: try entry(.write, call, via: "POST /cases/{id}/resolve"))
        return WebHeaders.redirect("/cases/\(caseID)/conflicts?done=resolve")
    }

    // MARK: Sharing

    func sharePage(_ call: Call) async throws -> Response {
        let t = call.t
        _ = try require(call, .supervisor)
        let caseID = try caseID(call)
        let snapshot = try store.read(caseID, recording: try entry(.read, call, via: "GET /cases/{id}/share"))
        let own = store.replicaID.institution.rawValue
        // With a consortium directory, its members are the institutions one may share with.
        let directory = try store.memberDirectory()
        var known = Set(
            try directory.map { $0.members.map(\.id.rawValue) } ?? store.knownInstitutions().map(\.rawValue))
        if directory == nil {
            for peer in api.node?.peersToSync() ?? [] { known.insert(peer.replica.institution.rawValue) }
        }
        known.remove(own)
        func choices(_ field: String, checked: Set<String>) -> [[String: Any]] {
            options(field, selected: nil, t).map { option in
                var option = option
                option["selected"] = checked.contains(option["code"] as? String ?? "")
                return option
            }
        }
        let until = Date().addingTimeInterval(365 * 86_400)
        let parts = WebCatalogue.seoulCalendar.dateComponents([.year, .month, .day], from: until)
        let data: [String: Any] = [
            "caseID": caseID.rawValue, "caseTitle": text(snapshot, "title") ?? t["untitled"],
            "known": known.sorted().map { ["id": $0, "name": institutionName($0)] },
            "directory": directory != nil, "bases": options("consent#c1.basis", selected: "consent", t),
            "purposes": choices("consent#c1.purposes", checked: ["case-management"]),
            "categories": choices("consent#c1.categories", checked: ["general"]),
            "defaultUntil": String(format: "%04d-%02d-%02d", parts.year ?? 2027, parts.month ?? 1, parts.day ?? 1),
            "participants": participants(snapshot).filter { $0 != own }.map {
                ["id": $0, "name": institutionName($0)]
            },
        ]
        return render(call, "share", data, title: t["share_title"], page: "share", caseID: caseID.rawValue)
    }

    func share(_ call: Call) async throws -> Response {
        let form = try await checkedForm(call)
        _ = try require(call, .supervisor)
        let caseID = try caseID(call)
        let name = (form.first("institution") ?? "").trimmingCharacters(in: .whitespaces)
        let institution: InstitutionID
        do { institution = try InstitutionID(name) } catch { throw WebFailure(.unprocessableContent, error.message) }
        guard let date = form.first("until"), date.count == 10 else {
            throw WebFailure(.unprocessableContent, call.t["share_until"])
        }
        let grant = try CaseOperations.grant(
            institutions: [institution.rawValue], consent: nil, basis: form.first("basis") ?? "consent",
            categories: form.all("categories").isEmpty ? ["general"] : form.all("categories"),
            purposes: form.all("purposes").isEmpty ? ["case-management"] : form.all("purposes"),
            until: "\(date)T23:59:59+09:00", subject: "household", grantor: "subject")
        // The institutions of this node's configured peers are vouched for by its
        // operator; another one only when the supervisor says it is new.
        var allowed = Set((api.node?.peersToSync() ?? []).map(\.replica.institution))
        if form.first("allowNew") == "true" { allowed.insert(institution) }
        try store.share(
            caseID, grant: grant, allowingNew: allowed,
            recording: try entry(.write, call, via: "POST /cases/{id}/share"))
        return WebHeaders.redirect("/cases/\(caseID)?done=share-\(caseID)")
    }

    func withdraw(_ call: Call) async throws -> Response {
        let form = try await checkedForm(call)
        _ = try require(call, .supervisor)
        let caseID = try caseID(call)
        let institution: InstitutionID
        do { institution = try InstitutionID(form.first("institution") ?? "") } catch {
            throw WebFailure(.unprocessableContent, error.message)
        }
        try store.withdraw(
            caseID, from: institution, recording: try entry(.write, call, via: "POST /cases/{id}/withdraw"))
        return WebHeaders.redirect("/cases/\(caseID)?done=withdraw")
    }

    // MARK: 동기화 상태

    func syncPage(_ call: Call) async throws -> Response {
        _ = try require(call, .admin)
        return try syncStatus(call, results: [])
    }

    func syncStatus(_ call: Call, results: [(text: String, failed: Bool)]) throws -> Response {
        let t = call.t
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        var states = Dictionary(uniqueKeysWithValues: try store.peerStates().map { ($0.peer, $0) })
        let configured = api.node?.peersToSync().map(\.replica) ?? []
        let peers = Array(Set(configured).union(states.keys)).sorted().map { peer -> [String: Any] in
            let state = states.removeValue(forKey: peer)
            var row: [String: Any] = [
                "peer": "\(institutionName(peer.institution.rawValue)) (\(peer.rawValue))",
                "pulled": state.map { "\($0.changesPulled)" } ?? "0",
                "lastSuccess": state?.lastSuccessAtMillis.map { t.time(millis: $0) } ?? t["never"],
                "lag": state?.lastSuccessAtMillis.map { now > $0 ? t.duration(seconds: Double(now - $0) / 1000) : "0" }
                    ?? "—",
            ]
            if let error = state?.lastError { row["error"] = error }
            return row
        }
        let quarantine = try store.quarantined(includingResolved: false).map { change -> [String: Any] in
            ["at": t.time(millis: change.receivedAtMillis), "origin": change.origin, "reason": change.reason]
        }
        let data: [String: Any] = [
            "replica": store.replicaID.rawValue, "peers": peers, "quarantine": quarantine,
            "pending": try store.pendingCount(), "canSync": !configured.isEmpty,
            "restoreHold": try store.restoreHold().map(\.rawValue),
            "syncResults": results.map { ["text": $0.text, "failed": $0.failed] },
        ]
        return render(call, "sync", data, title: t["sync_title"], page: "sync")
    }

    /// Syncs with every configured peer now (a field laptop back on the network).
    func syncNow(_ call: Call) async throws -> Response {
        _ = try await checkedForm(call)
        _ = try require(call, .admin)
        guard let node = api.node else { throw WebFailure(.serviceUnavailable, call.t["sync_no_node"]) }
        var results: [(text: String, failed: Bool)] = []
        for peer in node.peersToSync() {
            let outcome = await node.sync(with: peer)
            if let error = outcome.error {
                results.append(
                    (
                        call.t.format(
                            "sync_result_failed",
                            ["peer": institutionName(peer.replica.institution.rawValue), "error": "\(error)"]), true
                    ))
            } else {
                results.append(
                    (
                        call.t.format(
                            "sync_result_ok",
                            [
                                "peer": institutionName(peer.replica.institution.rawValue),
                                "received": "\(outcome.summary.changesReceived)",
                                "sent": "\(outcome.summary.changesSent)",
                            ]), false
                    ))
            }
        }
        return try syncStatus(call, results: results)
    }
}
