import CaseMeshStore
import Foundation
import GRDB
import Testing

/// Need to know with consent, over real nodes: who receives a case, and what a node
/// holds after its institution stops being entitled to it.
@Suite(.serialized) struct ConsentTests {
    /// The rows of a node's database that hold anything of a case (its access log,
    /// a case of its own, is kept: it records who accessed the case, not the case).
    static func rows(_ data: String, _ caseID: String) throws -> [String: Int] {
        let queue = try DatabaseQueue(path: data + "/" + CaseStore.databaseFileName)
        return try queue.read { db in
            [
                "fieldState": try Int.fetchOne(
                    db,
                    sql: "SELECT COUNT(*) FROM fieldState JOIN caseRecord ON caseRecord.id = caseRef WHERE caseKey = ?",
                    arguments: [caseID]) ?? 0,
                "pendingChange": try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM pendingChange WHERE caseKey = ?", arguments: [caseID]) ?? 0,
            ]
        }
    }

    /// Whether any file of the node's database holds these bytes.
    static func databaseContains(_ data: String, _ text: String) throws -> Bool {
        let needle = Data(text.utf8)
        for suffix in ["", "-wal"] {
            let path = data + "/" + CaseStore.databaseFileName + suffix
            if let bytes = FileManager.default.contents(atPath: path), bytes.range(of: needle) != nil { return true }
        }
        return false
    }

    static func isoTime(secondsFromNow: Double) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date().addingTimeInterval(secondsFromNow))
    }

    @Test func consentDecidesWhoHoldsTheCaseAndWithdrawalPurgesIt() throws {
        let root = Binary.temporaryDirectory("consent")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root,
            [
                "dong": "dong.office/server", "senior": "senior.centre/server", "mental": "mental.centre/server",
                "community": "community.centre/server",
            ])
        let tls = consortium.tls
        func data(_ short: String) -> [String] { consortium.data(short) }
        let dong = try NodeProcess(data("dong") + tls["dong"]!, logPath: root + "/dong.log")
        defer { dong.stop() }
        func sync(_ short: String) throws -> String {
            try Binary.ok(["sync"] + data(short) + tls[short]! + ["--peer", "dong.office/server=\(dong.address)"])
        }

        // The dong centre opens the case and shares it, under the household's consent,
        // with the senior and mental health centres. The community centre is listed as
        // a participant but no consent covers it.
        let caseID = try Binary.ok(["case", "open", "--field", "riskLevel=crisis"] + data("dong"))
        try Binary.ok(["case", "note", caseID, "history of depression, lives alone"] + data("dong"))
        try Binary.ok(
            [
                "case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre", "--until",
                Self.isoTime(secondsFromNow: 86_400),
            ] + data("dong"))
        try Binary.ok(
            ["case", "share", caseID, "mental.centre", "--allow-new-institution", "mental.centre"] + data("dong"))
        try Binary.ok(
            ["case", "add", caseID, "participants", "community.centre", "--allow-new-institution", "community.centre"]
                + data("dong"))
        for short in ["senior", "mental", "community"] { _ = try sync(short) }
        #expect(try NetworkTests.show(root + "/senior", caseID) != nil)
        #expect(try NetworkTests.show(root + "/mental", caseID) != nil)
        #expect(try NetworkTests.show(root + "/community", caseID) == nil)
        let community = try DatabaseQueue(path: root + "/community/" + CaseStore.databaseFileName)
        for table in ["caseRecord", "changeSegment", "fieldState", "pendingChange"] {
            let count = try community.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") }
            #expect(count == 0, "the community centre's \(table) holds nothing of the case")
        }

        #expect(try Self.databaseContains(root + "/senior", "history of depression"), "the note was on disk")

        // The household withdraws its consent for the senior centre: at its next sync
        // the senior centre's node purges the case, down to the bytes on disk.
        try Binary.ok(["case", "withdraw", caseID, "senior.centre"] + data("dong"))
        let report = try sync("senior")
        #expect(report.contains("purged \(caseID)"), "\(report)")
        let gone = try Binary.run(["case", "show", caseID] + data("senior"))
        #expect(gone.status != 0 && gone.stderr.contains("purged"), "\(gone.stderr)")
        #expect(try Self.rows(root + "/senior", caseID) == ["fieldState": 0, "pendingChange": 0])
        #expect(!(try Self.databaseContains(root + "/senior", "history of depression")))

        // The others keep working: the mental health centre's note reaches the dong
        // centre; the senior centre, syncing again, does not get the case back.
        try Binary.ok(["case", "note", caseID, "counselling started"] + data("mental"))
        _ = try sync("mental")
        #expect(try NetworkTests.show(root + "/dong", caseID)?.contains("counselling started") == true)
        _ = try sync("senior")
        #expect(try NetworkTests.show(root + "/senior", caseID) == nil)
        #expect(!(try Self.databaseContains(root + "/senior", "counselling started")))

        // Consent given again: the senior centre's next sync brings the whole history back.
        try Binary.ok(
            ["case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre"] + data("dong"))
        _ = try sync("senior")
        let back = try NetworkTests.show(root + "/senior", caseID)
        #expect(back?.contains("history of depression") == true && back?.contains("counselling started") == true)
        _ = try sync("mental")
        #expect(back == (try NetworkTests.show(root + "/dong", caseID)), "the same case as the lead's")
    }

    @Test func anExpiredConsentStopsSharingWithoutAnyoneActing() throws {
        let root = Binary.temporaryDirectory("consent-expiry")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try TestAuthority(in: root)
        try Binary.ok(["init", "--replica", "dong.office/server", "--data", root + "/dong"])
        try Binary.ok(["init", "--replica", "senior.centre/server", "--data", root + "/senior"])
        let dongTLS = try authority.issue("dong.office/server")
        let seniorTLS = try authority.issue("senior.centre/server")
        let dong = try NodeProcess(["--data", root + "/dong"] + dongTLS, logPath: root + "/dong.log")
        defer { dong.stop() }
        let caseID = try Binary.ok(["case", "open", "--field", "riskLevel=high", "--data", root + "/dong"])
        let until = Self.isoTime(secondsFromNow: 4)
        try Binary.ok([
            "case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre", "--until", until,
            "--data", root + "/dong",
        ])
        let sync = ["sync", "--data", root + "/senior", "--peer", "dong.office/server=\(dong.address)"] + seniorTLS
        try Binary.ok(sync)
        #expect(try NetworkTests.show(root + "/senior", caseID) != nil)
        Thread.sleep(forTimeInterval: 5)
        try Binary.ok(["case", "note", caseID, "written after the consent ended", "--data", root + "/dong"])
        let report = try Binary.ok(sync)
        #expect(report.contains("purged \(caseID)"), "\(report)")
        #expect(!(try Self.databaseContains(root + "/senior", "written after the consent ended")))
    }
}

/// Resident registration numbers never leave the node in clear.
@Suite struct ResidentNumberTests {
    @Test func onlyTheKeyedHashIsStoredAndSentAndBothSidesCanMatchIt() throws {
        let root = Binary.temporaryDirectory("rrn")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try TestAuthority(in: root)
        try Binary.ok(["init", "--replica", "dong.office/server", "--data", root + "/dong"])
        try Binary.ok(["init", "--replica", "senior.centre/server", "--data", root + "/senior"])
        let secret = root + "/consortium.secret"
        try Data("a consortium secret shared out of band, long enough".utf8).write(to: URL(fileURLWithPath: secret))
        let caseID = try Binary.ok(["case", "open", "--field", "person#p1.name=Kim", "--data", root + "/dong"])
        let number = "450812-1234567"
        let identify = ["case", "identify", caseID, "p1", "--secret-file", secret, "--data", root + "/dong"]
        #expect(try Binary.run(identify, input: number + "\n").status == 0)
        // A malformed number is refused without being echoed back.
        let bad = try Binary.run(identify, input: "4508121234\n")
        #expect(bad.status != 0 && bad.stderr.contains("not a resident registration number"))
        #expect(!bad.stderr.contains("4508121234"))
        try Binary.ok(
            [
                "case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre", "--categories",
                "general,unique-id", "--data", root + "/dong",
            ])
        let dong = try NodeProcess(
            ["--data", root + "/dong"] + authority.issue("dong.office/server"), logPath: root + "/dong.log")
        defer { dong.stop() }
        try Binary.ok(
            ["sync", "--data", root + "/senior", "--peer", "dong.office/server=\(dong.address)"]
                + authority.issue("senior.centre/server"))
        for node in ["dong", "senior"] {
            for form in [number, "4508121234567"] {
                #expect(
                    !(try ConsentTests.databaseContains(root + "/" + node, form)), "\(node) never stores the number")
            }
        }
        let find = ["case", "find-person", "--json", "--secret-file", secret, "--data", root + "/senior"]
        let found = try Binary.run(find, input: "4508121234567\n")
        #expect(found.stdout.contains(caseID) && found.stdout.contains("p1"), "\(found.stdout) \(found.stderr)")
        #expect(
            try Binary.run(find, input: "450812-2234567\n").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                == "[]")
        let otherSecret = root + "/other.secret"
        try Data("another consortium's secret, also long enough!!".utf8).write(to: URL(fileURLWithPath: otherSecret))
        let elsewhere = ["case", "find-person", "--json", "--secret-file", otherSecret, "--data", root + "/senior"]
        #expect(
            try Binary.run(elsewhere, input: number + "\n").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                == "[]")
    }
}

/// The access log: every read and write through the tool, replicated to the lead.
@Suite struct AccessLogTests {
    @Test func theLeadSeesEveryParticipantsReadsAndWritesAfterASync() throws {
        let root = Binary.temporaryDirectory("audit")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root,
            [
                "dong": "dong.office/server", "senior": "senior.centre/laptop-2", "mental": "mental.centre/server",
                "community": "community.centre/server",
            ])
        let tls = consortium.tls
        func data(_ short: String) -> [String] { consortium.data(short) }
        let dong = try NodeProcess(data("dong") + tls["dong"]!, logPath: root + "/dong.log")
        defer { dong.stop() }
        func sync(_ short: String) throws {
            try Binary.ok(["sync"] + data(short) + tls[short]! + ["--peer", "dong.office/server=\(dong.address)"])
        }
        let caseID = try Binary.ok(["case", "open", "--actor", "choi", "--field", "riskLevel=high"] + data("dong"))
        try Binary.ok(
            [
                "case", "share", caseID, "senior.centre", "mental.centre", "--allow-new-institution", "senior.centre",
                "--allow-new-institution", "mental.centre", "--actor", "choi",
            ] + data("dong"))
        let other = try Binary.ok(["case", "open", "--actor", "choi", "--field", "riskLevel=low"] + data("dong"))
        try Binary.ok(
            ["case", "share", other, "mental.centre", "--allow-new-institution", "mental.centre", "--actor", "choi"]
                + data("dong"))
        for short in ["senior", "mental", "community"] { try sync(short) }

        // On home visits: the senior centre's laptop reads the case, the mental health
        // centre writes a note to it and reads the other case.
        try Binary.ok(["case", "show", caseID, "--actor", "park", "--purpose", "monitoring"] + data("senior"))
        try Binary.ok(["case", "note", caseID, "visited, stable", "--actor", "lee"] + data("mental"))
        try Binary.ok(["case", "show", other, "--actor", "lee"] + data("mental"))
        for short in ["senior", "mental", "community"] { try sync(short) }

        let log =
            try JSONSerialization.jsonObject(
                with: Data(try Binary.ok(["audit", "--case", caseID, "--json"] + data("dong")).utf8))
            as! [[String: String]]
        let seen = Set(log.map { "\($0["node"]!) \($0["actor"]!) \($0["action"]!) \($0["purpose"]!)" })
        #expect(seen.contains("dong.office/server choi open case-management"))
        #expect(seen.contains("dong.office/server choi write case-management"))
        #expect(seen.contains("senior.centre/laptop-2 park read monitoring"), "\(seen)")
        #expect(seen.contains("mental.centre/server lee write case-management"), "\(seen)")
        #expect(!seen.contains("mental.centre/server lee read case-management"), "the other case's read is not here")
        #expect(log.allSatisfy { $0["time"]?.isEmpty == false && $0["institution"]?.isEmpty == false })

        // The senior centre answers for what it holds; the other case it cannot see.
        #expect(try Binary.run(["audit", "--case", other] + data("senior")).status != 0)
        #expect(try Binary.run(["audit", "--case", caseID] + data("community")).status != 0)
        let community = try DatabaseQueue(path: root + "/community/" + CaseStore.databaseFileName)
        #expect(try community.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM caseRecord") } == 0)
        // Reading does not change the case: every participant still shows the same one.
        #expect(
            try NetworkTests.show(root + "/dong", caseID) == (try NetworkTests.show(root + "/mental", caseID)))
    }
}

/// Sensitive fields go only where a consent covers sensitive data.
@Suite struct SensitiveFieldTests {
    @Test func healthDataReachesOnlyTheInstitutionWhoseConsentCoversIt() throws {
        let root = Binary.temporaryDirectory("sensitive")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root,
            [
                "dong": "dong.office/server", "senior": "senior.centre/server", "community": "community.centre/server",
                "laptop": "senior.centre/laptop-1",
            ])
        let (names, tls) = (consortium.names, consortium.tls)
        func data(_ short: String) -> [String] { consortium.data(short) }
        // One change with general and sensitive fields together.
        let caseID = try Binary.ok(
            [
                "case", "open", "--field", "riskLevel=crisis", "--field", "person#p1.name=Kim",
                "--field", "person#p1.healthNotes=severe depression, under treatment",
                "--field", "person#p1.disability=true",
            ] + data("dong"))
        try Binary.ok(
            [
                "case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre", "--categories",
                "general,sensitive",
            ] + data("dong"))
        try Binary.ok(
            [
                "case", "share", caseID, "community.centre", "--allow-new-institution", "community.centre",
                "--categories", "general",
            ] + data("dong"))
        let dong = try NodeProcess(data("dong") + tls["dong"]!, logPath: root + "/dong.log")
        defer { dong.stop() }
        func sync(_ short: String, with peer: String, at address: String) throws {
            try Binary.ok(["sync"] + data(short) + tls[short]! + ["--peer", "\(names[peer]!)=\(address)"])
        }
        try sync("senior", with: "dong", at: dong.address)
        try sync("community", with: "dong", at: dong.address)

        let senior = try NetworkTests.show(root + "/senior", caseID)
        #expect(senior?.contains("severe depression") == true && senior?.contains("\"crisis\"") == true)
        let community = try NetworkTests.show(root + "/community", caseID)
        #expect(community?.contains("\"crisis\"") == true && community?.contains("Kim") == true, "general data arrives")
        #expect(community?.contains("healthNotes") == false && community?.contains("disability") == false)
        #expect(!(try ConsentTests.databaseContains(root + "/community", "severe depression")))
        // The origin's seals still verified with the sensitive operations withheld.
        #expect(try Binary.ok(["quarantine", "--json"] + data("community")) == "[]")

        // A senior centre laptop pulling only from the community centre does not get a
        // copy with holes: the changes with withheld fields come whole from a node that has them.
        let relay = try NodeProcess(data("community") + tls["community"]!, logPath: root + "/community.log")
        defer { relay.stop() }
        try sync("laptop", with: "community", at: relay.address)
        #expect(try NetworkTests.show(root + "/laptop", caseID)?.contains("severe depression") != false)
        try sync("laptop", with: "dong", at: dong.address)
        #expect(try NetworkTests.show(root + "/laptop", caseID)?.contains("severe depression") == true)
    }
}
