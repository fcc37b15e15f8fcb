import CaseMeshModel
import CaseMeshTestSupport
import Foundation
import Testing

/// A consortium mid-upgrade, with real `casemesh serve` processes over mutual TLS:
/// two nodes on the built-in case schema and one on the next, which adds a field.
@Suite(.serialized) struct MixedVersionTests {
    static func json(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }

    /// The `case` entity's fields as `case show --json` prints them.
    static func fields(_ data: String, _ caseID: String) throws -> [String: String] {
        let shown = try json(try Binary.ok(["case", "show", caseID, "--json", "--data", data]))
        let entity = (shown["entities"] as? [String: Any])?["case"] as? [String: Any] ?? [:]
        return entity.compactMapValues { $0 as? String }
    }

    static func held(_ data: String) throws -> Int {
        (try json(try Binary.ok(["schema", "show", "--json", "--data", data]))["held_changes"] as? Int) ?? -1
    }

    @Test func aNewerSchemasChangesAreHeldRelayedAndAppliedOnceANodeUpgrades() throws {
        let root = Binary.temporaryDirectory("mixed-versions")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try TestAuthority(in: root)
        let replicas = [
            "mental": "mental.centre/server", "dong": "dong.office/server", "senior": "senior.centre/server",
        ]
        var tls: [String: [String]] = [:]
        for (short, replica) in replicas {
            try Binary.ok(["init", "--replica", replica, "--data", root + "/" + short])
            tls[short] = try authority.issue(replica)
        }
        func data(_ short: String) -> [String] { ["--data", root + "/" + short] }
        let newer = CaseSchema.bundled.version + 1
        let schemaFile = root + "/case-schema-\(newer).json"
        try Data(NewerSchema.json(adding: ["visitPlan"])).write(to: URL(fileURLWithPath: schemaFile))
        try Binary.ok(["schema", "install", schemaFile] + data("mental"))

        // The mental health centre, upgraded first, writes the new field.
        let caseID = try Binary.ok(
            ["case", "open", "--field", "riskLevel=high", "--field", "visitPlan=매주 화요일 방문"] + data("mental")
        ).trimmingCharacters(in: .whitespacesAndNewlines)
        for institution in ["dong.office", "senior.centre"] {
            try Binary.ok(
                [
                    "case", "share", caseID, institution, "--allow-new-institution", institution, "--categories",
                    "general,sensitive,unique-id",
                ] + data("mental"))
        }
        // An older build refuses to write a field it does not have.
        let refused = try Binary.run(["case", "set", caseID, "visitPlan", "x"] + data("dong"))
        #expect(refused.status != 0)

        // The dong office (schema 2) syncs with it: the case arrives, the new field is held.
        let mental = try NodeProcess(data("mental") + tls["mental"]!, logPath: root + "/mental.log")
        defer { mental.stop() }
        let first = try Binary.run(
            ["sync", "--json"] + data("dong") + ["--peer", "mental.centre/server=\(mental.address)"] + tls["dong"]!)
        #expect(first.status == 0, "a newer peer's schema is no reason to fail: \(first.stderr)")
        #expect(try Self.fields(root + "/dong", caseID)["riskLevel"] == "high", "the rest of the change merged")
        #expect(try Self.fields(root + "/dong", caseID)["visitPlan"] == nil)
        #expect(try Self.held(root + "/dong") == 1)
        let status = try Self.json(try Binary.ok(["status", "--json"] + data("dong")))
        #expect((status["held_for_newer_schema"] as? [String: Any])?["fields"] as? [String] == ["case.visitPlan"])

        // The senior centre (schema 2) never talks to the mental centre: it gets the
        // change through the dong office, held there too.
        let dong = try NodeProcess(data("dong") + tls["dong"]!, logPath: root + "/dong.log")
        defer { dong.stop() }
        let relayed = try Binary.run(
            ["sync", "--json"] + data("senior") + ["--peer", "dong.office/server=\(dong.address)"] + tls["senior"]!)
        #expect(relayed.status == 0, "\(relayed.stderr)")
        #expect(try Self.fields(root + "/senior", caseID)["riskLevel"] == "high")
        #expect(try Self.held(root + "/senior") == 1)

        // The senior centre upgrades: what it held is merged, with no sync needed.
        try Binary.ok(["schema", "install", schemaFile] + data("senior"))
        let merged = try Self.fields(root + "/senior", caseID)
        #expect(merged["visitPlan"] == "매주 화요일 방문", "\(merged)")
        #expect(try Self.held(root + "/senior") == 0)
        #expect(merged == (try Self.fields(root + "/mental", caseID)), "the case as its writer holds it")
        // Installing it while the node runs is refused, as is an older schema.
        let running = try Binary.run(["schema", "install", schemaFile] + data("dong"))
        #expect(running.status != 0 && running.stderr.contains("stop the node"), "\(running.stderr)")
        let again = try Binary.run(["schema", "install", schemaFile] + data("senior"))
        #expect(again.status != 0 && again.stderr.contains("already follows case schema \(newer)"), "\(again.stderr)")
        #expect(mental.stop() == 0 && dong.stop() == 0)
    }
}
