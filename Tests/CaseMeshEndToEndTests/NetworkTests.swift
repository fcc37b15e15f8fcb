import CaseMeshCRDT
import CaseMeshStore
import Foundation
import GRDB
import Testing

/// Real `casemesh serve` processes syncing over mutual TLS on loopback.
@Suite(.serialized) struct NetworkTests {
    static func show(_ data: String, _ caseID: String) throws -> String? {
        let result = try Binary.run(["case", "show", caseID, "--json", "--data", data])
        return result.status == 0 ? result.stdout : nil
    }

    @Test func threeNodesInAChainConvergeWithTheConflictOnEveryParticipant() throws {
        let root = Binary.temporaryDirectory("net-chain")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try TestAuthority(in: root)
        let names = ["dong": "dong.office/server", "senior": "senior.centre/server", "mental": "mental.centre/server"]
        var tls: [String: [String]] = [:]
        for (short, replica) in names {
            try Binary.ok(["init", "--replica", replica, "--data", root + "/" + short])
            tls[short] = try authority.issue(replica)
        }
        func data(_ short: String) -> [String] { ["--data", root + "/" + short] }
        // A chain: dong dials senior, senior dials mental; every link syncs both ways.
        func startChain() throws -> [NodeProcess] {
            let mental = try NodeProcess(data("mental") + tls["mental"]!, logPath: root + "/mental.log")
            let senior = try NodeProcess(
                data("senior") + tls["senior"]! + [
                    "--peer", "mental.centre/server=\(mental.address)", "--interval", "0.3",
                ],
                logPath: root + "/senior.log")
            let dong = try NodeProcess(
                data("dong") + tls["dong"]! + [
                    "--peer", "senior.centre/server=\(senior.address)", "--interval", "0.3",
                ],
                logPath: root + "/dong.log")
            return [dong, senior, mental]
        }
        var nodes = try startChain()

        // Local edits while the nodes run on the same data directories.
        let caseID = try Binary.ok(
            ["case", "open", "--field", "report.channel=kakao", "--field", "riskLevel=high"] + data("dong"))
        try Binary.ok(
            ["case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre"] + data("dong"))
        try Binary.ok(
            ["case", "share", caseID, "mental.centre", "--allow-new-institution", "mental.centre"] + data("dong"))
        #expect(
            try eventually { try Self.show(root + "/mental", caseID) != nil },
            "the case reached the mental centre through the senior centre")
        #expect(
            try eventually {
                try Set(["dong", "senior", "mental"].map { try Self.show(root + "/" + $0, caseID) }).count == 1
            })

        // Everyone goes offline (home visits) and edits the same field, and one adds a note.
        for node in nodes { #expect(node.stop() == 0, "graceful shutdown on SIGTERM") }
        try Binary.ok(["case", "set", caseID, "riskLevel", "crisis"] + data("dong"))
        try Binary.ok(["case", "set", caseID, "riskLevel", "medium"] + data("senior"))
        try Binary.ok(["case", "set", caseID, "riskLevel", "low"] + data("mental"))
        try Binary.ok(["case", "note", caseID, "visit by the mental health centre"] + data("mental"))
        nodes = try startChain()
        let converged = try eventually(60) {
            let views = try ["dong", "senior", "mental"].map { try Self.show(root + "/" + $0, caseID) }
            return views[0] != nil && views[0] == views[1] && views[1] == views[2]
                && views[0]!.contains("visit by the mental")
                && views[0]!.contains("\"crisis\"") && views[0]!.contains("\"medium\"")
        }
        #expect(converged, "identical case show --json on every participant")
        let shown =
            try JSONSerialization.jsonObject(with: Data(try Self.show(root + "/dong", caseID)!.utf8)) as! [String: Any]
        let conflicts = shown["conflicts"] as! [[String: Any]]
        #expect(conflicts.count == 1)
        #expect((conflicts.first?["values"] as? [Any])?.count == 3, "all three concurrent values are kept")

        let peers =
            try JSONSerialization.jsonObject(with: Data(try Binary.ok(["peers", "--json"] + data("dong")).utf8))
            as! [[String: Any]]
        #expect(peers.first?["peer"] as? String == "senior.centre/server")
        #expect(peers.first?["last_success"] is String)
        for node in nodes { #expect(node.stop() == 0, "graceful shutdown on SIGTERM") }
    }

    @Test func aNonParticipantHoldsNothingOfTheCaseInItsDatabase() throws {
        let root = Binary.temporaryDirectory("net-need-to-know")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try TestAuthority(in: root)
        try Binary.ok(["init", "--replica", "dong.office/server", "--data", root + "/dong"])
        try Binary.ok(["init", "--replica", "community.centre/server", "--data", root + "/community"])
        let dongTLS = try authority.issue("dong.office/server")
        let communityTLS = try authority.issue("community.centre/server")
        let caseID = try Binary.ok(["case", "open", "--field", "riskLevel=crisis", "--data", root + "/dong"])
        try Binary.ok(["case", "note", caseID, "mental health history", "--data", root + "/dong"])
        let dong = try NodeProcess(["--data", root + "/dong"] + dongTLS, logPath: root + "/dong.log")
        defer { dong.stop() }
        let synced = try Binary.run(
            ["sync", "--json", "--data", root + "/community", "--peer", "dong.office/server=\(dong.address)"]
                + communityTLS)
        #expect(synced.status == 0, "\(synced.stderr)")
        let queue = try DatabaseQueue(path: root + "/community/" + CaseStore.databaseFileName)
        for table in ["caseRecord", "changeSegment", "fieldState", "pendingChange"] {
            let rows = try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") }
            #expect(rows == 0, "\(table) holds nothing of the case")
        }
    }

    @Test func untrustedExpiredAndRevokedCertificatesAreRefused() throws {
        let root = Binary.temporaryDirectory("net-certs")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try TestAuthority(in: root)
        let stranger = try TestAuthority(in: root, name: "other-ca")
        try Binary.ok(["init", "--replica", "senior.centre/server", "--data", root + "/senior"])
        let caseID = try Binary.ok(["case", "open", "--data", root + "/senior"])
        try Binary.ok([
            "case", "share", caseID, "dong.office", "--allow-new-institution", "dong.office", "--data",
            root + "/senior",
        ])
        let senior = try NodeProcess(
            ["--data", root + "/senior"] + authority.issue("senior.centre/server"), logPath: root + "/senior.log")
        defer { senior.stop() }
        try Binary.ok(["init", "--replica", "dong.office/server", "--data", root + "/dong"])
        let peer = ["--peer", "senior.centre/server=\(senior.address)", "--data", root + "/dong"]

        var otherCA = try stranger.issue("dong.office/server")
        // It trusts the consortium CA, but its own certificate comes from another CA.
        otherCA[otherCA.firstIndex(of: "--ca")! + 1] = authority.directory + "/ca.pem"
        otherCA[otherCA.firstIndex(of: "--crl")! + 1] = authority.directory + "/crl.pem"
        let expired = try authority.issueExpired("dong.office/server")
        let revokedTLS = try authority.issue("dong.office/server")
        try authority.revoke("dong.office/server")
        for (label, flags) in [("another CA", otherCA), ("expired", expired), ("revoked", revokedTLS)] {
            let result = try Binary.run(["sync"] + peer + flags)
            #expect(result.status != 0, "\(label): the sync must fail")
            #expect(throws: StoreError.self, "\(label): nothing arrived") {
                try CaseStore.open(directory: root + "/dong").snapshot(of: CaseMeshCRDTCaseID.make(caseID))
            }
        }
        #expect(senior.log.contains("not issued by the consortium CA"))
        #expect(senior.log.contains("expired"))
        #expect(senior.log.contains("revoked"))

        // No client certificate at all.
        let refusedBefore = senior.log.components(separatedBy: "peer refused").count
        _ = try TestAuthority.shell(
            "echo | timeout 10 openssl s_client -connect \(senior.address) -tls1_3 -quiet 2>&1; true")
        #expect(eventually(5) { senior.log.components(separatedBy: "peer refused").count > refusedBefore })

        // The node kept serving: a node with a valid certificate syncs.
        try Binary.ok(["init", "--replica", "dong.office/laptop-2", "--data", root + "/laptop"])
        let laptop = try Binary.run(
            ["sync", "--data", root + "/laptop", "--peer", "senior.centre/server=\(senior.address)"]
                + authority.issue("dong.office/laptop-2"))
        #expect(laptop.status == 0, "\(laptop.stderr)")
        #expect(
            try Self.show(root + "/laptop", caseID) != nil,
            "the dong office's laptop shares what the institution may see")
    }

    @Test func garbageAndOversizedFramesCloseOnlyThatConnection() throws {
        let root = Binary.temporaryDirectory("net-frames")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try TestAuthority(in: root)
        try Binary.ok(["init", "--replica", "senior.centre/server", "--data", root + "/senior"])
        let caseID = try Binary.ok(["case", "open", "--data", root + "/senior"])
        try Binary.ok([
            "case", "share", caseID, "dong.office", "--allow-new-institution", "dong.office", "--data",
            root + "/senior",
        ])
        let senior = try NodeProcess(
            ["--data", root + "/senior"] + authority.issue("senior.centre/server"), logPath: root + "/senior.log")
        defer { senior.stop() }
        let dongTLS = try authority.issue("dong.office/server")
        let cert = dongTLS[dongTLS.firstIndex(of: "--cert")! + 1]
        let key = dongTLS[dongTLS.firstIndex(of: "--key")! + 1]
        let client =
            "timeout 10 openssl s_client -connect \(senior.address) -cert '\(cert)' -key '\(key)' -quiet >/dev/null 2>&1; true"
        _ = try TestAuthority.shell("head -c 300 /dev/urandom | \(client)")
        _ = try TestAuthority.shell("printf '\\177\\377\\377\\377' | \(client)")
        #expect(eventually(5) { senior.log.contains("at most 8388608 allowed") || senior.log.contains("malformed") })
        try Binary.ok(["init", "--replica", "dong.office/server", "--data", root + "/dong"])
        let result = try Binary.run(
            ["sync", "--data", root + "/dong", "--peer", "senior.centre/server=\(senior.address)"] + dongTLS)
        #expect(result.status == 0, "the node keeps serving others: \(result.stderr)")
        #expect(try Self.show(root + "/dong", caseID) != nil)
    }

    @Test func aSyncKilledMidwayLosesNothingAcknowledgedAndTheNextCompletes() throws {
        let root = Binary.temporaryDirectory("net-kill")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try TestAuthority(in: root)
        try Binary.ok(["init", "--replica", "dong.office/server", "--data", root + "/dong"])
        // A large log of the dong centre's own (restored from a bundle): 150 cases ×
        // 100 changes, shared with the senior centre; the node seals them when it starts.
        let bundle = root + "/big.cmb"
        let dongTLS = try authority.issue("dong.office/server")
        let total = try CrashTests.writeBundle(
            cases: 150, perCase: 100, to: bundle, tls: dongTLS, participants: ["senior.centre"],
            origin: try ReplicaID("dong.office/server"))
        try Binary.ok([
            "changes", "import", bundle, "--data", root + "/dong", "--ca", authority.directory + "/ca.pem", "--crl",
            authority.directory + "/crl.pem",
        ])
        let dong = try NodeProcess(["--data", root + "/dong"] + dongTLS, logPath: root + "/dong.log")
        defer { dong.stop() }
        try Binary.ok(["init", "--replica", "senior.centre/server", "--data", root + "/senior"])
        let seniorTLS = try authority.issue("senior.centre/server")
        let arguments =
            ["sync", "--data", root + "/senior", "--peer", "dong.office/server=\(dong.address)"] + seniorTLS
        var kills = 0
        for attempt in 0..<4 {
            let child = try Binary.start(arguments)
            usleep(UInt32(150_000 + attempt * 100_000))
            if child.isRunning {
                kill(child.processIdentifier, SIGKILL)
                kills += 1
            }
            child.waitUntilExit()
            #expect(try CrashTests.integrityCheck(root + "/senior") == "ok")
        }
        #expect(kills >= 1, "at least one sync was killed midway")
        let finished = try Binary.run(arguments + ["--json"])
        #expect(finished.status == 0, "\(finished.stderr)")
        #expect(try CrashTests.heldChanges(["--data", root + "/senior"]) == total)
    }
}

/// Parses a case ID in tests that do not import the CRDT module.
enum CaseMeshCRDTCaseID {
    static func make(_ text: String) throws -> CaseMeshCRDT.CaseID { try CaseMeshCRDT.CaseID(text) }
}
