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
        let dong = try NodeProcess(
            consortium.data("dong") + consortium.tls["dong"]! + ["--http", "127.0.0.1:0"], logPath: root + "/dong.log")
        let dongHTTP = try #require(dong.nextAnnouncement()?["port"] as? Int)
        let senior = try NodeProcess(
            consortium.data("senior") + consortium.tls["senior"]! + ["--http", "127.0.0.1:0"],
            logPath: root + "/senior.log")
        let seniorHTTP = try #require(senior.nextAnnouncement()?["port"] as? Int)
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
}
