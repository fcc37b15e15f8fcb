import Foundation
import Testing

/// Two replicas run by the real binary, edited offline and reconciled by bundle files.
@Suite struct OfflineExchangeTests {
    @Test func concurrentOfflineEditsConvergeWithOneConflictAndBothNotes() throws {
        let root = Binary.temporaryDirectory("exchange")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dong = ["--data", root + "/dong"]
        let senior = ["--data", root + "/senior"]
        try Binary.ok(["init", "--replica", "dongducheon.jungang-dong/server"] + dong)
        try Binary.ok(["init", "--replica", "dongducheon.senior-welfare/laptop-2"] + senior)
        // Bundles carry the origins' seals: each node seals its changes with its
        // certificate's key, and the importer verifies them against the CA.
        let authority = try TestAuthority(in: root)
        let sealDong = Array(try authority.issue("dongducheon.jungang-dong/server").prefix(6))
        let sealSenior = Array(try authority.issue("dongducheon.senior-welfare/laptop-2").prefix(6))
        let verify = ["--ca", authority.directory + "/ca.pem", "--crl", authority.directory + "/crl.pem"]

        let caseID = try Binary.ok(
            [
                "case", "open", "--field", "report.channel=kakao", "--field", "riskLevel=high", "--field",
                "title=Kim household",
            ]
                + dong)
        try Binary.ok(
            [
                "case", "share", caseID, "dongducheon.senior-welfare", "--allow-new-institution",
                "dongducheon.senior-welfare",
            ] + dong)
        try Binary.ok(
            ["changes", "export", "--out", root + "/first.cmb", "--for", "dongducheon.senior-welfare"] + dong + sealDong
        )
        try Binary.ok(["changes", "import", root + "/first.cmb"] + senior + verify)

        // Offline, at the same time: the same register, a set, and notes on both sides.
        try Binary.ok(["case", "set", caseID, "riskLevel", "crisis"] + dong)
        try Binary.ok(["case", "note", caseID, "Emergency welfare application started"] + dong)
        try Binary.ok(["case", "set", caseID, "riskLevel", "medium"] + senior)
        try Binary.ok(["case", "note", caseID, "Home visit: meals are the main need"] + senior)
        try Binary.ok(["case", "add", caseID, "report.crisisSignals", "food-insecurity"] + senior)

        // Both directions, twice: duplicates must be harmless.
        for round in 1...2 {
            try Binary.ok(["changes", "export", "--out", root + "/d\(round).cmb"] + dong + sealDong)
            try Binary.ok(["changes", "export", "--out", root + "/s\(round).cmb"] + senior + sealSenior)
            try Binary.ok(["changes", "import", root + "/s\(round).cmb"] + dong + verify)
            try Binary.ok(["changes", "import", root + "/d\(round).cmb"] + senior + verify)
        }

        let dongView = try Binary.ok(["case", "show", caseID, "--json"] + dong)
        let seniorView = try Binary.ok(["case", "show", caseID, "--json"] + senior)
        #expect(dongView == seniorView, "both replicas show byte-identical JSON")
        let shown = try JSONSerialization.jsonObject(with: Data(dongView.utf8)) as! [String: Any]
        let conflicts = shown["conflicts"] as! [[String: Any]]
        #expect(conflicts.count == 1)
        #expect(conflicts.first?["field"] as? String == "riskLevel")
        let values = (conflicts.first?["values"] as? [[String: Any]])?.compactMap { $0["value"] as? String }
        #expect(Set(values ?? []) == ["crisis", "medium"], "neither write is lost")
        let entities = shown["entities"] as! [String: [String: Any]]
        let notes = (entities["case"]?["notes"] as? [[String: Any]])?.compactMap { $0["text"] as? String } ?? []
        #expect(Set(notes) == ["Emergency welfare application started", "Home visit: meals are the main need"])
        #expect(entities["report"]?["crisisSignals"] as? [String] == ["food-insecurity"])

        for data in [dong, senior] {
            let open =
                try JSONSerialization.jsonObject(with: Data(try Binary.ok(["conflicts", "--json"] + data).utf8))
                as! [Any]
            #expect(open.count == 1)
        }

        // A case worker resolves it; the resolution travels like any change.
        try Binary.ok(["resolve", caseID, "riskLevel", "high"] + senior)
        try Binary.ok(["changes", "export", "--out", root + "/resolution.cmb"] + senior + sealSenior)
        try Binary.ok(["changes", "import", root + "/resolution.cmb"] + dong + verify)
        for data in [dong, senior] {
            #expect(try Binary.ok(["conflicts", "--json"] + data) == "[]")
        }
        let resolvedDong = try Binary.ok(["case", "show", caseID, "--json"] + dong)
        #expect(resolvedDong == (try Binary.ok(["case", "show", caseID, "--json"] + senior)))
        #expect(resolvedDong.contains(#""riskLevel":"high""#))
    }

    @Test func bundlesImportedInAnyOrderGiveTheSameState() throws {
        let root = Binary.temporaryDirectory("order")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let a = ["--data", root + "/a"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + a)
        let authority = try TestAuthority(in: root)
        let sealA = Array(try authority.issue("dong.office/server").prefix(6))
        let verify = ["--ca", authority.directory + "/ca.pem", "--crl", authority.directory + "/crl.pem"]
        let caseID = try Binary.ok(["case", "open"] + a)
        // Shared with the receiving institution: a node purges a case its institution
        // may not hold, from a bundle as from a sync.
        try Binary.ok(["case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre"] + a)
        try Binary.ok(["changes", "export", "--out", root + "/1.cmb"] + a + sealA)
        try Binary.ok(["case", "set", caseID, "stage", "assessment"] + a)
        try Binary.ok(["case", "add", caseID, "tags", "isolation"] + a)
        try Binary.ok(["changes", "export", "--out", root + "/2.cmb"] + a + sealA)
        // The second bundle first: its later changes wait for the first ones.
        for (name, order) in [("b", ["1", "2"]), ("c", ["2", "1", "2"])] {
            let data = ["--data", root + "/" + name]
            try Binary.ok(["init", "--replica", "senior.centre/\(name)"] + data)
            for bundle in order { try Binary.ok(["changes", "import", root + "/\(bundle).cmb"] + data + verify) }
        }
        let views = try ["a", "b", "c"].map {
            try Binary.ok(["case", "show", caseID, "--json", "--data", root + "/" + $0])
        }
        #expect(views[0] == views[1])
        #expect(views[1] == views[2])
    }

    @Test func exportForAnInstitutionLeavesOutCasesItDoesNotParticipateIn() throws {
        let root = Binary.temporaryDirectory("for")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dong = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + dong)
        let authority = try TestAuthority(in: root)
        let sealDong = Array(try authority.issue("dong.office/server").prefix(6))
        let verify = ["--ca", authority.directory + "/ca.pem", "--crl", authority.directory + "/crl.pem"]
        let shared = try Binary.ok(["case", "open"] + dong)
        let privateCase = try Binary.ok(["case", "open"] + dong)
        try Binary.ok(
            ["case", "share", shared, "community.centre", "--allow-new-institution", "community.centre"] + dong)
        try Binary.ok(
            ["changes", "export", "--out", root + "/c.cmb", "--for", "community.centre/server"] + dong + sealDong)
        let community = ["--data", root + "/community"]
        try Binary.ok(["init", "--replica", "community.centre/server"] + community)
        try Binary.ok(["changes", "import", root + "/c.cmb"] + community + verify)
        let listed = try Binary.ok(["case", "list", "--json"] + community)
        #expect(listed.contains(shared))
        #expect(!listed.contains(privateCase))
    }
}
