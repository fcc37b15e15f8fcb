import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
import Foundation
import GRDB
import Testing

/// kill -9 at random points: the store reopens intact and keeps every change it had
/// acknowledged as durable.
@Suite(.serialized) struct CrashTests {
    static let origin = try! ReplicaID("senior.centre/laptop-1")

    /// A bundle of `cases` × `perCase` changes from one origin, written by the test and
    /// sealed with the origin's certificate and key (`tls`).
    static func writeBundle(
        cases: Int, perCase: Int, to path: String, tls: [String], participants: [String] = [],
        origin: ReplicaID = origin
    ) throws -> Int {
        var generator = SeededGenerator(seed: 2026)
        var changes: [Change] = []
        var millis: UInt64 = 1_763_856_000_000
        for _ in 0..<cases {
            let caseID = CaseID.random(using: &generator)
            for seq in 1...UInt64(perCase) {
                millis += 1
                var ops: [FieldOperation] = [
                    .assign(
                        FieldKey(entity: "case", field: "riskLevel"),
                        .string(["low", "medium", "high"].randomElement(using: &generator)!)),
                    .append(FieldKey(entity: "case", field: "notes"), "visit \(seq)"),
                ]
                if seq == 1 {
                    let opener = origin.institution.rawValue
                    ops.append(.insert(FieldKey(entity: "case", field: "participants"), opener))
                    ops.append(.assign(FieldKey(entity: "case", field: "leadInstitution"), .string(opener)))
                    if !participants.isEmpty {
                        ops += ConsentGrant(recipients: try participants.map { try InstitutionID($0) }).ops()
                    }
                }
                let change = Change(
                    caseID: caseID, origin: origin, seq: seq, hlc: HybridTimestamp(physical: millis),
                    context: VersionVector([origin: seq - 1]), ops: ops)
                changes.append(change)
            }
        }
        let bundle = try SealedBundle.make(
            changes, origin: origin, tls: tls, schemaVersion: CaseSchema.bundled.version, createdAtMillis: millis)
        try Data(bundle.encoded()).write(to: URL(fileURLWithPath: path))
        return changes.count
    }

    /// Changes the replica holds, as `case list --json` reports them.
    static func heldChanges(_ data: [String]) throws -> Int {
        let listed =
            try JSONSerialization.jsonObject(with: Data(try Binary.ok(["case", "list", "--json"] + data).utf8))
            as! [[String: Any]]
        return listed.reduce(0) { $0 + (($1["changes"] as? Int) ?? 0) }
    }

    static func integrityCheck(_ directory: String) throws -> String? {
        let queue = try DatabaseQueue(path: directory + "/" + CaseStore.databaseFileName)
        return try queue.read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") }
    }

    @Test func importKilledAtRandomPointsLosesNothingAcknowledged() throws {
        let root = Binary.temporaryDirectory("crash-import")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let bundle = root + "/week-offline.cmb"
        let authority = try TestAuthority(in: root)
        // Shared with the importing institution (a node purges what it may not hold).
        let total = try Self.writeBundle(
            cases: 60, perCase: 100, to: bundle, tls: try authority.issue(Self.origin.rawValue),
            participants: ["dong.office"])
        let directory = root + "/replica"
        let verify = ["--ca", authority.directory + "/ca.pem", "--crl", authority.directory + "/crl.pem"]
        let data = ["--data", directory]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)

        var generator = SeededGenerator(seed: 9)
        var kills = 0
        for attempt in 0..<12 {
            let before = try Self.heldChanges(data)
            let outputPath = root + "/progress-\(attempt).jsonl"
            _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
            let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
            let process = Process()
            process.executableURL = Binary.url
            process.arguments =
                ["changes", "import", bundle, "--batch", "97", "--progress", "--json"] + data + verify
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Let it commit a random number of batches, then kill it at a random moment within the next.
            let batchesFirst = Int.random(in: 1...6, using: &generator)
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning, Date() < deadline,
                (try? String(contentsOfFile: outputPath, encoding: .utf8))?.split(separator: "\n").count ?? 0
                    < batchesFirst
            {
                usleep(1_000)
            }
            usleep(UInt32.random(in: 0...8_000, using: &generator))
            let killed = process.isRunning
            if killed {
                kill(process.processIdentifier, SIGKILL)
                kills += 1
            }
            process.waitUntilExit()
            try output.close()
            let lines = try String(contentsOfFile: outputPath, encoding: .utf8).split(separator: "\n")
            let acknowledged =
                lines.compactMap { line -> Int? in
                    let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                    return object?["durable_applied"] as? Int
                }.last ?? 0

            #expect(try Self.integrityCheck(directory) == "ok", "attempt \(attempt)")
            let after = try Self.heldChanges(data)
            #expect(
                after >= before + acknowledged,
                "attempt \(attempt): acknowledged \(acknowledged) on top of \(before), holds \(after)")
            if !killed { break }
        }
        #expect(kills >= 3, "the child was killed mid-import several times")

        // The interrupted import completes on the next run, to the same state as an uninterrupted one.
        try Binary.ok(["changes", "import", bundle] + data + verify)
        #expect(try Self.heldChanges(data) == total)
        let reference = ["--data", root + "/reference"]
        try Binary.ok(["init", "--replica", "dong.office/reference"] + reference)
        try Binary.ok(["changes", "import", bundle] + reference + verify)
        #expect(try Binary.ok(["case", "list", "--json"] + data) == Binary.ok(["case", "list", "--json"] + reference))
    }

    @Test func localWritesKilledMidwayKeepEveryRecordedChange() throws {
        let root = Binary.temporaryDirectory("crash-local")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let directory = root + "/replica"
        let data = ["--data", directory]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        let caseID = try Binary.ok(["case", "open"] + data)
        var recorded = 1
        var generator = SeededGenerator(seed: 17)
        for attempt in 0..<30 {
            let stdout = Pipe()
            let process = try Binary.start(["case", "note", caseID, "note \(attempt)"] + data, stdout: stdout)
            usleep(UInt32.random(in: 0...60_000, using: &generator))
            // Every eighth write runs to its end: on a loaded machine the process may
            // not reach its commit within 60 ms, and some writes must land.
            if attempt % 8 == 7 { process.waitUntilExit() }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            let said = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            if said.contains("recorded") { recorded += 1 }
            #expect(try Self.integrityCheck(directory) == "ok", "attempt \(attempt)")
            #expect(try Self.heldChanges(data) >= recorded, "attempt \(attempt)")
        }
        // A killed write either happened whole or not at all: every note shown is complete.
        let shown = try Binary.ok(["case", "show", caseID, "--json"] + data)
        #expect(try Self.heldChanges(data) == shown.components(separatedBy: "\"note ").count - 1 + 1)
    }

    /// An edit and its access-log entry commit together: killed at any point, a note
    /// that landed always has its entry naming who wrote it, and one that did not
    /// has none.
    @Test func everyEditThatLandsHasItsAccessEntryWhateverTheKillPoint() throws {
        let root = Binary.temporaryDirectory("crash-access")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        let caseID = try Binary.ok(["case", "open"] + data)
        var generator = SeededGenerator(seed: 31)
        var killed = 0
        for attempt in 0..<40 {
            let process = try Binary.start(
                ["case", "note", caseID, "note-\(attempt)-end", "--actor", "worker-\(attempt)"] + data,
                stdout: Pipe(), stderr: Pipe())
            usleep(UInt32.random(in: 0...60_000, using: &generator))
            // Every eighth write runs to its end: on a loaded machine the process may
            // not reach its commit within 60 ms, and some writes must land.
            if attempt % 8 == 7 { process.waitUntilExit() }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                killed += 1
            }
            process.waitUntilExit()
        }
        #expect(killed >= 5, "several writes were killed midway")
        let shown = try Binary.ok(["case", "show", caseID, "--json"] + data)
        let audit = try Binary.ok(["audit", "--case", caseID, "--json"] + data)
        let entries = try JSONSerialization.jsonObject(with: Data(audit.utf8)) as? [[String: Any]] ?? []
        let writers = Set(entries.filter { $0["action"] as? String == "write" }.compactMap { $0["actor"] as? String })
        var landed = 0
        for attempt in 0..<40 {
            let noted = shown.contains("note-\(attempt)-end")
            if noted { landed += 1 }
            #expect(noted == writers.contains("worker-\(attempt)"), "attempt \(attempt): note \(noted)")
        }
        #expect(landed > 0, "some writes landed before their process was killed or finished")
    }

    /// A node that crashed (here SIGSEGV, so the runtime's backtracer runs) and was
    /// killed can be restarted on the same sync and HTTP ports at once: a
    /// supervisor's restart must not fail with "address in use" because the
    /// backtracer inherited the listeners.
    @Test func aCrashedNodeRestartsOnItsOwnPortsAtOnce() throws {
        let root = Binary.temporaryDirectory("crash-restart")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["dong": "dong.office/server"])
        let arguments = consortium.data("dong") + consortium.tls["dong"]!
        let first = try NodeProcess(arguments + ["--http", "127.0.0.1:0"], logPath: root + "/first.log")
        let http = try #require(first.nextAnnouncement()?["port"] as? Int)
        let pid = first.process.processIdentifier
        kill(pid, SIGSEGV)
        // The runtime starts its backtracer as a child; the node is then killed the
        // way a supervisor kills a process that does not stop, while the backtracer
        // (which takes seconds) still runs.
        let children = "/proc/\(pid)/task/\(pid)/children"
        var backtracers: [pid_t] = []
        #expect(
            eventually(10) {
                backtracers = ((try? String(contentsOfFile: children, encoding: .utf8)) ?? "").split(
                    separator: " "
                ).compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                return !backtracers.isEmpty
            })
        // Whatever happens below, the backtracer does not outlive the test.
        defer { for child in backtracers { kill(child, SIGKILL) } }
        kill(pid, SIGKILL)
        // Bounded: a killed process whose exit is not seen fails the test, not hangs it.
        #expect(eventually(30) { !first.process.isRunning }, "the killed node exited")

        // Restarted at once on the same two ports, it serves both.
        let second = try NodeProcess(
            arguments + ["--http", "127.0.0.1:\(http)"], logPath: root + "/second.log",
            listen: "127.0.0.1:\(first.port)")
        defer { second.stop() }
        #expect(second.port == first.port)
        #expect(second.nextAnnouncement()?["port"] as? Int == http)
        #expect(try APIClient(base: "http://127.0.0.1:\(http)").call("GET", "/health/live").status == 200)
    }
}
