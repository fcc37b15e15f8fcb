import CaseMeshCRDT
import CaseMeshModel
import Crypto
import Foundation
import GRDB
import Testing

@testable import CaseMeshStore

/// A relay that alters another institution's change and re-signs it cannot make
/// anyone apply it.
@Suite(.serialized) struct AuthenticityTests {
    /// Plays the compromised relay: in its own database, changes the value of the
    /// origin's `riskLevel` write, puts the altered change's digest in the seal and
    /// signs the seal again with the relay's own key.
    static func tamper(_ data: String, caseID: String, origin: String, keyPath: String) throws {
        let key = try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: keyPath, encoding: .utf8))
        let queue = try DatabaseQueue(path: data + "/" + CaseStore.databaseFileName)
        try queue.write { db in
            let caseRef = try Int64.fetchOne(
                db, sql: "SELECT id FROM caseRecord WHERE caseKey = ?", arguments: [caseID])!
            let originRef = try Int64.fetchOne(db, sql: "SELECT id FROM replica WHERE name = ?", arguments: [origin])!
            var done = false
            for row in try Row.fetchAll(db, sql: "SELECT id, body FROM changeSegment ORDER BY id") where !done {
                var entries = try ChangeLogSegment.entries(of: [UInt8](row[1] as Data))
                for index in entries.indices where !done {
                    let entry = entries[index]
                    guard entry.caseRef == caseRef, entry.replicaRef == originRef else { continue }
                    let canonical = Change.encoded(caseID: caseID, origin: origin, rest: entry.rest)
                    var change = try Change(decoding: canonical)
                    let risk = FieldKey(entity: "case", field: "riskLevel")
                    guard let position = change.ops.firstIndex(where: { $0.field == risk }) else { continue }
                    change.ops[position] = .assign(risk, .string("low"))
                    let altered = change.encoded()
                    entries[index].rest = Array(altered[try Change.headerLength(ofEncoded: altered)...])
                    var segment = ChangeLogSegment()
                    for item in entries { segment.append(item) }
                    try db.execute(
                        sql: "UPDATE changeSegment SET body = ? WHERE id = ?",
                        arguments: [Data(segment.writer.bytes), row[0]])
                    // The seal, with the altered digest, signed again by the relay.
                    let seal = try Row.fetchOne(
                        db, sql: "SELECT number, digests FROM seal WHERE id = ?", arguments: [entry.sealRef])!
                    var digests = [UInt8](seal[1] as Data)
                    digests.replaceSubrange(
                        entry.leaf * 32..<(entry.leaf + 1) * 32, with: SealDigest.leaf(of: change))
                    let leaves = stride(from: 0, to: digests.count, by: 32).map { Array(digests[$0..<$0 + 32]) }
                    let message = Seal.message(
                        origin: try ReplicaID(origin), number: UInt64(seal[0] as Int64), leaves: leaves)
                    let signature = try key.signature(for: message).rawRepresentation
                    try db.execute(
                        sql: "UPDATE seal SET digests = ?, signature = ? WHERE id = ?",
                        arguments: [Data(digests), signature, entry.sealRef])
                    done = true
                }
            }
            #expect(done, "found the origin's riskLevel write to alter")
        }
    }

    @Test func aRelayThatAltersAndResignsAChangeIsRefusedAndTheRestApplies() throws {
        let root = Binary.temporaryDirectory("authenticity")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root,
            ["dong": "dong.office/server", "senior": "senior.centre/server", "mental": "mental.centre/server"])
        let (names, tls) = (consortium.names, consortium.tls)
        func data(_ short: String) -> [String] { consortium.data(short) }
        func sync(_ short: String, with peer: String, at address: String) throws -> Binary.Result {
            try Binary.run(["sync", "--json"] + data(short) + tls[short]! + ["--peer", "\(names[peer]!)=\(address)"])
        }

        // The dong centre's case, shared with both centres; its node seals it when it starts.
        let tampered = try Binary.ok(["case", "open", "--field", "riskLevel=high"] + data("dong"))
        try Binary.ok(
            [
                "case", "share", tampered, "senior.centre", "mental.centre", "--allow-new-institution", "senior.centre",
                "--allow-new-institution", "mental.centre",
            ]
                + data("dong"))
        let dong = try NodeProcess(data("dong") + tls["dong"]!, logPath: root + "/dong.log")
        defer { dong.stop() }
        #expect(try sync("senior", with: "dong", at: dong.address).status == 0)
        // A second case, written and sealed after: its seal stays honest.
        let honest = try Binary.ok(["case", "open", "--field", "riskLevel=medium"] + data("dong"))
        try Binary.ok(
            [
                "case", "share", honest, "senior.centre", "mental.centre", "--allow-new-institution", "senior.centre",
                "--allow-new-institution", "mental.centre",
            ]
                + data("dong"))
        try Binary.ok(["case", "note", honest, "written by the dong centre"] + data("dong"))
        #expect(try sync("senior", with: "dong", at: dong.address).status == 0)
        try Binary.ok(["case", "note", honest, "written by the senior centre"] + data("senior"))

        // The senior centre's node is compromised: it alters the dong centre's change
        // and signs the seal again with its own key, then serves the mental health centre.
        try Self.tamper(
            root + "/senior", caseID: tampered, origin: "dong.office/server", keyPath: tls["senior"]![3])
        let relay = try NodeProcess(data("senior") + tls["senior"]!, logPath: root + "/senior.log")
        defer { relay.stop() }
        let pulled = try sync("mental", with: "senior", at: relay.address)
        #expect(pulled.status == 0, "a refused seal does not fail the sync: \(pulled.stderr)")

        let quarantine =
            try JSONSerialization.jsonObject(
                with: Data(try Binary.ok(["quarantine", "--json"] + data("mental")).utf8)) as! [[String: Any]]
        #expect(
            quarantine.contains { $0["case"] as? String == tampered && $0["origin"] as? String == "dong.office/server" }
        )
        #expect(
            quarantine.allSatisfy {
                $0["case"] as? String == tampered && ($0["reason"] as? String)?.contains("signature") == true
            })
        #expect(quarantine.allSatisfy { $0["from"] as? String == "senior.centre/server" })
        #expect(try NetworkTests.show(root + "/mental", tampered) == nil, "nothing of the altered seal applied")
        let honestCase = try NetworkTests.show(root + "/mental", honest)
        #expect(
            honestCase?.contains("written by the dong centre") == true, "the honest seals in the same batch applied")
        #expect(honestCase?.contains("written by the senior centre") == true)

        // From the dong centre itself the genuine change arrives and applies.
        #expect(try sync("mental", with: "dong", at: dong.address).status == 0)
        let genuine = try NetworkTests.show(root + "/mental", tampered)
        #expect(genuine?.contains("\"high\"") == true && genuine?.contains("\"low\"") == false)
    }

    /// A senior centre laptop and the dong centre's node with one CA: the laptop
    /// opens a case shared with the dong centre.
    struct LaptopAndDong {
        let authority: TestAuthority
        let laptop: [String]
        let dong: [String]
        let laptopTLS: [String]
        let verify: [String]
        let caseID: String

        init(in root: String, openWith fields: [String] = []) throws {
            authority = try TestAuthority(in: root)
            laptop = ["--data", root + "/laptop"]
            dong = ["--data", root + "/dong"]
            try Binary.ok(["init", "--replica", "senior.centre/laptop-1"] + laptop)
            try Binary.ok(["init", "--replica", "dong.office/server"] + dong)
            laptopTLS = Array(try authority.issue("senior.centre/laptop-1").prefix(6))
            verify = ["--ca", authority.directory + "/ca.pem", "--crl", authority.directory + "/crl.pem"]
            caseID = try Binary.ok(["case", "open"] + fields + laptop)
            try Binary.ok(
                ["case", "share", caseID, "dong.office", "--allow-new-institution", "dong.office"] + laptop)
        }
    }

    @Test func aBundleIsVerifiedLikeASyncUnsignedOrAlteredChangesAreQuarantined() throws {
        let root = Binary.temporaryDirectory("bundle-seals")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let setup = try LaptopAndDong(in: root, openWith: ["--field", "riskLevel=high"])
        let (_, laptop, dong, laptopTLS, verify, caseID) = (
            setup.authority, setup.laptop, setup.dong, setup.laptopTLS, setup.verify, setup.caseID
        )

        // Without its key the laptop cannot seal: the importer quarantines everything.
        let unsigned = try Binary.run(["changes", "export", "--out", root + "/unsigned.cmb"] + laptop)
        #expect(unsigned.status == 0 && unsigned.stderr.contains("not sealed"))
        let refused = try Binary.run(["changes", "import", root + "/unsigned.cmb"] + dong + verify)
        #expect(refused.status != 0 && refused.stderr.contains("not signed by its origin"), "\(refused.stderr)")
        #expect(try NetworkTests.show(root + "/dong", caseID) == nil)

        // An altered copy of a sealed bundle (checksum recomputed) is refused too.
        try Binary.ok(["changes", "export", "--out", root + "/sealed.cmb"] + laptop + laptopTLS)
        var bundle = try ChangeBundle(
            decoding: [UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/sealed.cmb"))))
        let risk = FieldKey(entity: "case", field: "riskLevel")
        let target = try #require(
            try bundle.changes.firstIndex { try Change(decoding: $0).ops.contains { $0.field == risk } })
        var altered = try Change(decoding: bundle.changes[target])
        altered.ops = altered.ops.map { $0.field == risk ? .assign(risk, .string("low")) : $0 }
        bundle.changes[target] = altered.encoded()
        try Data(bundle.encoded()).write(to: URL(fileURLWithPath: root + "/altered.cmb"))
        let forged = try Binary.run(["changes", "import", root + "/altered.cmb"] + dong + verify)
        #expect(forged.status != 0 && forged.stderr.contains("signature"), "\(forged.stderr)")
        #expect(try NetworkTests.show(root + "/dong", caseID) == nil, "nothing of the altered seal applied")
        // One entry per change: the altered one now says why it was refused this time.
        let quarantine = try Binary.ok(["quarantine", "--json"] + dong)
        #expect(quarantine.contains("signature"))
        let entries = try JSONSerialization.jsonObject(with: Data(quarantine.utf8)) as? [[String: Any]] ?? []
        let dots = entries.map { "\($0["case"] ?? "") \($0["origin"] ?? "") \($0["seq"] ?? "")" }
        #expect(Set(dots).count == dots.count, "no change listed twice: \(dots)")

        // The genuine sealed bundle applies, and resolves every entry.
        try Binary.ok(["changes", "import", root + "/sealed.cmb"] + dong + verify)
        #expect(try NetworkTests.show(root + "/dong", caseID)?.contains("\"high\"") == true)
        #expect(try Binary.ok(["quarantine", "--json"] + dong) == "[]")
        let all = try Binary.ok(["quarantine", "--all", "--json"] + dong)
        #expect(all.contains("\"resolved\":\"") && !all.contains("\"resolved\":null"), "\(all)")
    }

    @Test func aBundleFromAnUnknownSignerWaitsForTheCAAndARetryAppliesIt() throws {
        let root = Binary.temporaryDirectory("quarantine-retry")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let setup = try LaptopAndDong(in: root, openWith: ["--field", "riskLevel=high"])
        let (authority, laptop, dong, laptopTLS, _, caseID) = (
            setup.authority, setup.laptop, setup.dong, setup.laptopTLS, setup.verify, setup.caseID
        )
        try Binary.ok(["changes", "export", "--out", root + "/sealed.cmb"] + laptop + laptopTLS)

        // No --ca: the signer is new here, so its changes wait, and the tool says why.
        var counts: [Int] = []
        var entries: [[String: Any]] = []
        for _ in 0..<2 {
            let first = try Binary.run(["changes", "import", root + "/sealed.cmb"] + dong)
            #expect(first.status != 0 && first.stderr.contains("pass --ca"), "\(first.stderr)")
            let kept = try Binary.ok(["quarantine", "--json"] + dong)
            entries = try JSONSerialization.jsonObject(with: Data(kept.utf8)) as? [[String: Any]] ?? []
            counts.append(entries.count)
        }
        #expect(counts[0] > 0 && counts[0] == counts[1], "one entry per change, imported twice: \(counts)")
        #expect(entries.allSatisfy { $0["retryable"] as? Bool == true && $0["attempts"] as? Int == 2 })

        // A retry with the consortium CA verifies the signer and applies them.
        let retried = try Binary.ok(
            ["quarantine", "retry", "--ca", authority.directory + "/ca.pem", "--crl", authority.directory + "/crl.pem"]
                + dong)
        #expect(retried.contains("still quarantined") && retried.contains("0 still"), "\(retried)")
        #expect(try NetworkTests.show(root + "/dong", caseID)?.contains("\"high\"") == true)
        #expect(try Binary.ok(["quarantine"] + dong) == "nothing quarantined")

        // An entry can be dropped by its ID; an unknown ID is refused.
        let unknown = try Binary.run(["quarantine", "drop", "999"] + dong)
        #expect(unknown.status != 0 && unknown.stderr.contains("no quarantine entry 999"))
        let id = try #require(entries.first?["id"] as? Int)
        try Binary.ok(["quarantine", "drop", "\(id)"] + dong)
        #expect(!(try Binary.ok(["quarantine", "--all", "--json"] + dong)).contains("\"id\":\(id),"))
    }

    /// A laptop revoked after this node trusted its signer writes nothing through it
    /// from then on: every import (and every sync batch) checks known signers against
    /// the current CRL.
    @Test func aRevokedLaptopsNewChangesAreRefusedWhereItsSignerWasTrusted() throws {
        let root = Binary.temporaryDirectory("revoked-signer")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let setup = try LaptopAndDong(in: root)
        let (authority, laptop, dong, laptopTLS, verify, caseID) = (
            setup.authority, setup.laptop, setup.dong, setup.laptopTLS, setup.verify, setup.caseID
        )
        try Binary.ok(["changes", "export", "--out", root + "/1.cmb"] + laptop + laptopTLS)
        try Binary.ok(["changes", "import", root + "/1.cmb"] + dong + verify)

        // Stolen at noon: revoked. What it writes after reaches the dong centre's node
        // in a bundle (by hand, or through a relay that has not heard yet).
        try authority.revoke("senior.centre/laptop-1")
        try Binary.ok(["case", "note", caseID, "written-after-revocation"] + laptop)
        try Binary.ok(["changes", "export", "--out", root + "/2.cmb"] + laptop + laptopTLS)
        let refused = try Binary.run(["changes", "import", root + "/2.cmb"] + dong + verify)
        #expect(refused.status != 0 && refused.stderr.contains("no longer verifies"), "\(refused.stderr)")
        #expect(try NetworkTests.show(root + "/dong", caseID)?.contains("written-after-revocation") == false)
        #expect(try Binary.ok(["quarantine", "--json"] + dong).contains("no longer verifies"))

        // --ca without --crl is refused: it would accept a revoked signer.
        let noCRL = try Binary.run(
            ["changes", "import", root + "/2.cmb", "--ca", authority.directory + "/ca.pem"] + dong)
        #expect(noCRL.status != 0 && noCRL.stderr.contains("--ca needs --crl"), "\(noCRL.stderr)")
    }

    /// Notes written with the command line while `serve` runs and a peer syncs in a
    /// loop are sealed before the peer can pull them: the peer ends with every note,
    /// nothing quarantined and nothing waiting.
    @Test func editsWhileServingAreSealedBeforeAPeerPullsThem() throws {
        let root = Binary.temporaryDirectory("edits-while-serving")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["dong": "dong.office/server", "senior": "senior.centre/server"])
        let tls = consortium.tls
        let dong = try NodeProcess(consortium.data("dong") + tls["dong"]!, logPath: root + "/dong.log")
        defer { dong.stop() }
        let caseID = try Binary.ok(["case", "open"] + consortium.data("dong"))
        try Binary.ok(
            ["case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre"]
                + consortium.data("dong"))
        let sync =
            ["sync"] + consortium.data("senior") + tls["senior"]! + ["--peer", "dong.office/server=\(dong.address)"]
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/bin/bash")
        writer.arguments = [
            "-c",
            "for i in $(seq 1 30); do '\(Binary.url.path)' case note \(caseID) note-$i --data '\(root)/dong' >/dev/null; done",
        ]
        try writer.run()
        while writer.isRunning { _ = try Binary.run(sync) }
        writer.waitUntilExit()
        try Binary.ok(sync)
        let shown = try NetworkTests.show(root + "/senior", caseID) ?? ""
        let missing = (1...30).filter { !shown.contains("\"note-\($0)\"") }
        #expect(missing.isEmpty, "notes missing on the peer: \(missing)")
        #expect(try Binary.ok(["quarantine"] + consortium.data("senior")) == "nothing quarantined")
        #expect(
            try Binary.ok(["quarantine", "--all"] + consortium.data("senior")) == "nothing quarantined",
            "no note ever arrived unsealed")
        #expect(try ConsentTests.rows(root + "/senior", caseID)["pendingChange"] == 0, "nothing waits")
    }
}
