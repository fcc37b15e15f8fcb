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
}
