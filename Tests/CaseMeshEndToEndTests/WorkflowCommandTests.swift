import Foundation
import Testing

/// Stage moves and statutory deadlines as a case worker runs them from the command line.
@Suite struct WorkflowCommandTests {
    @Test func stagesMoveAsEventsWithTheirRulesAndTheDeadlinesFollow() throws {
        let root = Binary.temporaryDirectory("workflow")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        let caseID = try Binary.ok(["case", "open", "--field", "title=workflow", "--field", "stage=discovery"] + data)
        #expect(try Binary.ok(["case", "deadlines", caseID] + data).contains("no deadline has started"))
        try Binary.ok(["case", "stage", caseID, "intake", "--actor", "이수진 (lee)"] + data)
        let open = try Binary.ok(["case", "deadlines", caseID, "--json"] + data)
        #expect(open.contains("\"name\":\"assessment\"") && open.contains("\"status\":\"open\""), "\(open)")

        // The rules: not to the stage it is at, not to an unknown stage, not closed
        // with an active service without a reason, not reopened without one.
        let same = try Binary.run(["case", "stage", caseID, "intake"] + data)
        #expect(same.status != 0 && same.stderr.contains("at intake already"))
        let unknown = try Binary.run(["case", "stage", caseID, "finished"] + data)
        #expect(unknown.status != 0 && unknown.stderr.contains("no stage 'finished'"))
        try Binary.ok(["case", "set", caseID, "service#s1.status", "active"] + data)
        let busy = try Binary.run(["case", "stage", caseID, "closed"] + data)
        #expect(busy.status != 0 && busy.stderr.contains("a service is still active"), "\(busy.stderr)")
        try Binary.ok(["case", "stage", caseID, "assessment"] + data)
        try Binary.ok(["case", "stage", caseID, "conference"] + data)
        let assessed = try Binary.ok(["case", "deadlines", caseID, "--json"] + data)
        #expect(assessed.contains("\"name\":\"assessment\"") && assessed.contains("\"status\":\"met "), "\(assessed)")
        try Binary.ok(["case", "stage", caseID, "closed", "--reason", "전출 (moved away)"] + data)
        let reopen = try Binary.run(["case", "stage", caseID, "intake"] + data)
        #expect(reopen.status != 0 && reopen.stderr.contains("needs a reason"))
        let closed = try Binary.ok(["case", "deadlines", caseID] + data)
        #expect(closed.contains("selection") && closed.contains("not reached before closure"), "\(closed)")
        #expect(closed.contains("followUp3") && closed.contains("followUp6"))

        // Every move is a stage event with who, from, to and why.
        let shown = try Binary.ok(["case", "show", caseID, "--json"] + data)
        for fragment in ["이수진 (lee)", "\\\"from\\\":\\\"conference\\\"", "전출 (moved away)"] {
            #expect(shown.contains(fragment), "stage events hold \(fragment): \(shown.prefix(3000))")
        }
    }

    /// The referral and handover verbs refuse, with the reason, what this
    /// institution may not do; what it may do is recorded.
    @Test func referralAndHandoverVerbsKeepToWhoMayDoWhat() throws {
        let root = Binary.temporaryDirectory("workflow-roles")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        let caseID = try Binary.ok(["case", "open", "--field", "title=연계"] + data)
        let uncovered = try Binary.run(
            ["case", "refer", caseID, "--to", "senior.centre", "--service", "도시락 배달"] + data)
        #expect(uncovered.status != 0 && uncovered.stderr.contains("no consent of the case covers senior.centre"))
        try Binary.ok(["case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre"] + data)
        let referred = try Binary.ok(
            ["case", "refer", caseID, "--to", "senior.centre", "--service", "도시락 배달", "--json"] + data)
        let referral = try #require(
            (try JSONSerialization.jsonObject(with: Data(referred.utf8)) as? [String: Any])?["referral"] as? String)
        let answer = try Binary.run(["case", "referral", caseID, referral, "accepted"] + data)
        #expect(answer.status != 0 && answer.stderr.contains("only the receiving institution"), "\(answer.stderr)")
        let unexplained = try Binary.run(["case", "referral", caseID, referral, "withdrawn"] + data)
        #expect(unexplained.status != 0 && unexplained.stderr.contains("say why"))
        try Binary.ok(["case", "referral", caseID, referral, "withdrawn", "--reason", "가족이 거부"] + data)

        // The lead offers the case; it cannot accept its own offer; it withdraws it.
        let notPartner = try Binary.run(["case", "handover", caseID, "--to", "mental.centre"] + data)
        #expect(notPartner.status != 0 && notPartner.stderr.contains("does not take part"), "\(notPartner.stderr)")
        try Binary.ok(["case", "handover", caseID, "--to", "senior.centre", "--reason", "돌봄 중심"] + data)
        let twice = try Binary.run(["case", "handover", caseID, "--to", "senior.centre"] + data)
        #expect(twice.status != 0 && twice.stderr.contains("offered to senior.centre already"))
        let own = try Binary.run(["case", "handover", caseID, "--answer", "accepted"] + data)
        #expect(own.status != 0 && own.stderr.contains("offered to senior.centre, not to dong.office"))
        try Binary.ok(["case", "handover", caseID, "--answer", "withdrawn"] + data)
        let shown = try Binary.ok(["case", "show", caseID] + data)
        #expect(shown.contains("leadInstitution: dong.office") && shown.contains("withdrawn"), "\(shown.prefix(2000))")
        // The lead is not a field to set by hand.
        let seized = try Binary.run(["case", "set", caseID, "leadInstitution", "senior.centre"] + data)
        #expect(seized.status != 0 && seized.stderr.contains("changes only by a handover"), "\(seized.stderr)")
    }
}
