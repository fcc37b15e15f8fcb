import CaseMeshCRDT
import CaseMeshModel
@_spi(Testing) import CaseMeshStore
import Foundation
import Testing

/// Working a case together through the API, between real nodes over mutual TLS: a
/// referral's whole life (with an answer forged by the wrong institution, which
/// every other node quarantines), the service it led to, and a lead handover
/// after which the access log reaches the new lead.
@Suite(.serialized) struct CoordinationAPITests {
    /// A member's `casemesh serve` with its HTTP API on a free loopback port.
    static func serve(_ name: String, of consortium: TestConsortium, in root: String) throws -> (NodeProcess, Int) {
        let node = try NodeProcess(
            consortium.data(name) + consortium.tls[name]! + ["--http", "127.0.0.1:0"], logPath: root + "/\(name).log")
        guard let port = node.nextAnnouncement()?["port"] as? Int else {
            node.stop()
            throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "\(name) announced no HTTP port"])
        }
        return (node, port)
    }

    @Test(.timeLimit(.minutes(4)))
    func aReferralsLifeWithAForgedAnswerQuarantinedThenAHandover() throws {
        let root = Binary.temporaryDirectory("api-coordination")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root,
            ["dong": "dong.office/server", "senior": "senior.centre/server", "mental": "mental.centre/server"])
        try APITests.addStaff(consortium.data("dong"), "kim", "caseworker", "김민지")
        try APITests.addStaff(consortium.data("dong"), "park", "supervisor", "박서준")
        try APITests.addStaff(consortium.data("dong"), "root", "admin", "관리자")
        try APITests.addStaff(consortium.data("senior"), "lee", "caseworker", "이영희")
        try APITests.addStaff(consortium.data("senior"), "choi", "supervisor", "최수진")
        let (dong, dongHTTP) = try Self.serve("dong", of: consortium, in: root)
        let (senior, seniorHTTP) = try Self.serve("senior", of: consortium, in: root)
        defer {
            dong.stop()
            senior.stop()
        }
        func sync(_ name: String) throws {
            try Binary.ok(
                ["sync", "--peer", "dong.office/server=\(dong.address)"] + consortium.data(name)
                    + consortium.tls[name]!)
        }
        let kim = try APIClient(base: "http://127.0.0.1:\(dongHTTP)").login("kim", APITests.password)
        let park = try APIClient(base: "http://127.0.0.1:\(dongHTTP)").login("park", APITests.password)
        let admin = try APIClient(base: "http://127.0.0.1:\(dongHTTP)").login("root", APITests.password)
        let lee = try APIClient(base: "http://127.0.0.1:\(seniorHTTP)").login("lee", APITests.password)
        let choi = try APIClient(base: "http://127.0.0.1:\(seniorHTTP)").login("choi", APITests.password)

        // The dong office opens the case and shares it, with the person's consent,
        // with the senior welfare centre and the mental health welfare centre.
        let opened = try kim.call(
            "POST", "/api/v1/cases", body: #"{"fields": {"title": "중앙동 홀몸 어르신", "stage": "intake"}}"#)
        let caseID = try #require(opened.json["case"] as? String)
        let shared = try park.call(
            "POST", "/api/v1/cases/\(caseID)/share",
            body: #"""
                {"institutions": ["senior.centre", "mental.centre"], "basis": "consent", "purposes": ["service-linkage"],
                 "allowNewInstitution": ["senior.centre", "mental.centre"]}
                """#)
        #expect(shared.status == 201, "\(shared.body)")

        // A referral needs a consent covering the receiver.
        let uncovered = try kim.call(
            "POST", "/api/v1/cases/\(caseID)/referrals", body: #"{"to": "community.centre", "service": "밑반찬 지원"}"#)
        #expect(
            uncovered.status == 422 && uncovered.body.contains("no consent of the case covers"), "\(uncovered.body)")
        let referred = try kim.call(
            "POST", "/api/v1/cases/\(caseID)/referrals",
            body: #"{"to": "senior.centre", "service": "독거노인 안부 확인·도시락 배달", "need": "social-relations"}"#)
        #expect(referred.status == 201, "\(referred.body)")
        let referral = try #require(referred.json["referral"] as? String)
        // The dong office cannot answer its own referral.
        let selfAnswer = try kim.call(
            "POST", "/api/v1/cases/\(caseID)/referrals/\(referral)/status", body: #"{"status": "accepted"}"#)
        #expect(
            selfAnswer.status == 403 && selfAnswer.body.contains("only the receiving institution"), "\(selfAnswer.body)"
        )
        try sync("senior")
        try sync("mental")

        // The mental health centre's node is modified to accept the referral made
        // to the senior centre: it writes the answer anyway, and syncs it out.
        do {
            let store = try CaseStore.open(directory: root + "/mental")
            let forged = ReferralEvent(status: .accepted, institution: "mental.centre", by: "intruder", reason: nil)
            _ = try store.writeSkippingRoleRule(
                caseID: try CaseID(caseID),
                ops: [
                    .assign(CaseField.referral(referral, "progress"), .string("accepted")),
                    .append(CaseField.referral(referral, "events"), forged.text),
                ])
        }
        try sync("mental")
        let quarantine = try admin.call("GET", "/api/v1/quarantine")
        let entries = (quarantine.json["changes"] as? [[String: Any]]) ?? []
        #expect(
            entries.contains {
                ($0["origin"] as? String) == "mental.centre/server"
                    && (($0["reason"] as? String)?.contains("only the receiving institution (senior.centre)") ?? false)
            }, "\(quarantine.body)")
        func referralAt(_ client: APIClient) throws -> [String: Any] {
            let listed = try client.call("GET", "/api/v1/cases/\(caseID)/referrals")
            return ((listed.json["referrals"] as? [[String: Any]]) ?? []).first {
                $0["referral"] as? String == referral
            }
                ?? [:]
        }
        #expect(try referralAt(kim)["status"] as? String == "requested", "the forged answer changed nothing")

        // The senior centre accepts, provides the service, and finishes it.
        let accepted = try lee.call(
            "POST", "/api/v1/cases/\(caseID)/referrals/\(referral)/status", body: #"{"status": "accepted"}"#)
        #expect(accepted.status == 201, "\(accepted.body)")
        let service = try lee.call(
            "POST", "/api/v1/cases/\(caseID)/services",
            body: #"""
                {"kind": "meal-delivery", "amountWon": 120000, "fundingSource": "private-sponsorship",
                 "referral": "\#(referral)", "startedOn": "2026-12-01"}
                """#)
        #expect(service.status == 201, "\(service.body)")
        #expect(
            try lee.call(
                "POST", "/api/v1/cases/\(caseID)/services", body: #"{"kind": "meal-delivery", "amountWon": -5}"#
            )
            .status == 422)
        for status in ["in-progress", "done"] {
            let moved = try lee.call(
                "POST", "/api/v1/cases/\(caseID)/referrals/\(referral)/status", body: #"{"status": "\#(status)"}"#)
            #expect(moved.status == 201, "\(status): \(moved.body)")
        }
        let late = try lee.call(
            "POST", "/api/v1/cases/\(caseID)/referrals/\(referral)/status",
            body: #"{"status": "declined", "reason": "x"}"#)
        #expect(late.status == 409, "a finished referral cannot be declined: \(late.body)")
        try sync("senior")
        let atDong = try referralAt(kim)
        #expect(atDong["status"] as? String == "done", "\(atDong)")
        let events = ((atDong["events"] as? [[String: Any]]) ?? []).compactMap { $0["status"] as? String }
        #expect(events == ["requested", "accepted", "in-progress", "done"], "\(events)")
        let detail = try kim.call("GET", "/api/v1/cases/\(caseID)")
        #expect(
            detail.body.contains("120000") && detail.body.contains("private-sponsorship"), "\(detail.body.prefix(3000))"
        )

        // Only the lead offers the case; the offered institution accepts it.
        let notLead = try choi.call("POST", "/api/v1/cases/\(caseID)/handover", body: #"{"to": "senior.centre"}"#)
        #expect(notLead.status == 403, "\(notLead.body)")
        let offered = try park.call(
            "POST", "/api/v1/cases/\(caseID)/handover", body: #"{"to": "senior.centre", "reason": "돌봄 중심으로 전환"}"#)
        #expect(offered.status == 201, "\(offered.body)")
        let early = try choi.call("POST", "/api/v1/cases/\(caseID)/handover/answer", body: #"{"answer": "accepted"}"#)
        #expect(early.status == 404, "the offer has not reached the senior centre yet: \(early.body)")
        try sync("senior")
        let taken = try choi.call("POST", "/api/v1/cases/\(caseID)/handover/answer", body: #"{"answer": "accepted"}"#)
        #expect(taken.status == 201, "\(taken.body)")
        try sync("senior")
        try sync("senior")
        let lead = try kim.call("GET", "/api/v1/cases/\(caseID)")
        let fields = (lead.json["fields"] as? [[String: Any]]) ?? []
        let leadValue = fields.first { $0["field"] as? String == "leadInstitution" }?["value"] as? String
        #expect(leadValue == "senior.centre", "\(lead.body.prefix(3000))")
        // The former lead keeps the case, and no longer hands it over.
        let again = try park.call("POST", "/api/v1/cases/\(caseID)/handover", body: #"{"to": "mental.centre"}"#)
        #expect(again.status == 403, "\(again.body)")
        // The access log reached the new lead, with the dong office's entries.
        let after = try choi.call("GET", "/api/v1/cases/\(caseID)/access-log")
        #expect(after.body.contains("김민지") && after.body.contains("최수진"), "\(after.body.prefix(3000))")
        // Nothing of the access log waits at the new lead for history it lacks.
        let status = try Binary.ok(["status", "--json"] + consortium.data("senior"))
        #expect(status.contains(#""pending":0"#), "\(status)")
    }

    @Test(.timeLimit(.minutes(2)))
    func conferencesApprovePlanVersionsTasksAndPeopleAcrossCases() throws {
        let root = Binary.temporaryDirectory("api-conference")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["dong": "dong.office/server"])
        try APITests.addStaff(consortium.data("dong"), "kim", "caseworker", "김민지")
        let (dong, http) = try Self.serve("dong", of: consortium, in: root)
        defer { dong.stop() }
        let kim = try APIClient(base: "http://127.0.0.1:\(http)").login("kim", APITests.password)
        func open(_ title: String, address: String) throws -> String {
            let opened = try kim.call(
                "POST", "/api/v1/cases",
                body: #"""
                    {"fields": {"title": "\#(title)", "person#p1.name": "김 철수", "person#p1.birthYear": 1948,
                     "household.address": "\#(address)"}}
                    """#)
            #expect(opened.status == 201, "\(opened.body)")
            return try #require(opened.json["case"] as? String)
        }
        let first = try open("중앙동 어르신", address: "동두천시 중앙로 12")
        let warned = try kim.call(
            "POST", "/api/v1/cases",
            body:
                #"{"fields": {"person#p1.name": "김 철수", "person#p1.birthYear": 1948, "household.address": "동두천시 중앙로 12"}}"#
        )
        #expect(
            ((warned.json["possibleMatches"] as? [[String: Any]]) ?? []).contains { $0["case"] as? String == first },
            "opening a case about the same person warns: \(warned.body)")
        let second = try open("같은 분, 다른 신고", address: "동두천시  중앙로 12")
        let elsewhere = try open("동명이인", address: "동두천시 생연로 3")

        // The same name, birth year and address: a warning, and a reversible link.
        let matches = try kim.call("GET", "/api/v1/cases/\(second)/matches")
        let found = (matches.json["matches"] as? [[String: Any]]) ?? []
        let warnedCase = try #require(warned.json["case"] as? String)
        #expect(Set(found.compactMap { $0["case"] as? String }) == [first, warnedCase], "\(matches.body)")
        #expect(found.first?["basis"] as? String == "name-birth-address")
        #expect(!matches.body.contains(elsewhere), "a namesake elsewhere is not taken for the same person")
        let linked = try kim.call("POST", "/api/v1/cases/\(second)/links", body: #"{"case": "\#(first)"}"#)
        #expect(linked.status == 201 && (linked.json["changes"] as? [Any])?.count == 2, "\(linked.body)")
        #expect(try kim.call("POST", "/api/v1/cases/\(second)/links", body: #"{"case": "\#(first)"}"#).status == 409)
        let back = try kim.call("GET", "/api/v1/cases/\(first)/matches")
        #expect(back.json["linked"] as? [String] == [second], "the link is on both cases: \(back.body)")
        let unlinked = try kim.call(
            "POST", "/api/v1/cases/\(first)/links", body: #"{"case": "\#(second)", "action": "unlink"}"#)
        #expect(unlinked.status == 201)
        #expect(try kim.call("GET", "/api/v1/cases/\(second)/matches").json["linked"] as? [String] == [])

        // A conference approves the plan: version 1, then version 2; each item names it.
        try kim.call(
            "POST", "/api/v1/cases/\(first)/changes",
            body: #"""
                {"operations": [{"op": "assign", "field": "plan#meals.goal", "value": "끼니 거르지 않기"},
                 {"op": "assign", "field": "plan#care.goal", "value": "상담 재개"}]}
                """#)
        let conference = try kim.call(
            "POST", "/api/v1/cases/\(first)/conferences",
            body: #"""
                {"heldAt": "2026-12-03T10:00:00+09:00", "institutions": ["dong.office", "senior.centre"],
                 "people": ["김민지 (중앙동)", "이영희 (노인복지관)"], "decisions": ["도시락 배달 연계"], "approve": ["meals"]}
                """#)
        #expect(conference.status == 201 && conference.json["planVersion"] as? Int == 1, "\(conference.body)")
        let meeting = try #require(conference.json["conference"] as? String)
        let next = try kim.call(
            "POST", "/api/v1/cases/\(first)/conferences",
            body: #"{"heldAt": "2026-12-10T10:00:00+09:00", "approve": ["meals", "care"]}"#)
        #expect(next.json["planVersion"] as? Int == 2, "\(next.body)")
        let missing = try kim.call(
            "POST", "/api/v1/cases/\(first)/conferences",
            body: #"{"heldAt": "2026-12-11T10:00:00+09:00", "approve": ["nosuch"]}"#)
        #expect(missing.status == 404, "\(missing.body)")
        let detail = try kim.call("GET", "/api/v1/cases/\(first)")
        #expect(
            detail.body.contains("plan#meals.conference") && detail.body.contains(meeting),
            "\(detail.body.prefix(2000))")

        // Tasks: kim's own, linked to a plan item, earliest due first; a done one leaves the list.
        for (title, due) in [("두 번째 안부 전화", "2026-12-20"), ("첫 안부 전화", "2026-12-05")] {
            let added = try kim.call(
                "POST", "/api/v1/cases/\(first)/tasks",
                body: #"{"title": "\#(title)", "dueAt": "\#(due)", "linkedTo": "plan#meals"}"#)
            #expect(added.status == 201, "\(added.body)")
        }
        let badLink = try kim.call(
            "POST", "/api/v1/cases/\(first)/tasks", body: #"{"title": "x", "linkedTo": "referral#none"}"#)
        #expect(badLink.status == 404)
        var mine = try kim.call("GET", "/api/v1/tasks/mine")
        var tasks = (mine.json["tasks"] as? [[String: Any]]) ?? []
        #expect(tasks.compactMap { $0["title"] as? String } == ["첫 안부 전화", "두 번째 안부 전화"], "\(mine.body)")
        let task = try #require(tasks.first?["task"] as? String)
        #expect(
            try kim.call("POST", "/api/v1/cases/\(first)/tasks/\(task)", body: #"{"status": "done"}"#).status == 201)
        mine = try kim.call("GET", "/api/v1/tasks/mine")
        tasks = (mine.json["tasks"] as? [[String: Any]]) ?? []
        #expect(tasks.compactMap { $0["title"] as? String } == ["두 번째 안부 전화"])
    }
}
