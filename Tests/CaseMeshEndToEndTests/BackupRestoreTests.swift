import Foundation
import Testing

/// `casemesh backup` and `casemesh restore` as an operator runs them, against a real
/// `serve` process and real syncs.
@Suite struct BackupRestoreTests {
    /// Back up, make changes and sync them, restore the backup, sync again: nothing
    /// lost, nothing numbered twice; a restore under a running node and a damaged
    /// backup are refused and leave the store as it was.
    @Test func aRestoredNodeGetsBackWhatItLostAndNumbersNothingTwice() throws {
        let root = Binary.temporaryDirectory("backup-restore")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["dong": "dong.office/server", "senior": "senior.centre/laptop"])
        let tls = consortium.tls
        let dongData = consortium.data("dong")
        let seniorData = consortium.data("senior")
        let dong = try NodeProcess(dongData + tls["dong"]!, logPath: root + "/dong.log")
        defer { dong.stop() }
        let caseID = try Binary.ok(["case", "open", "--field", "title=restore-test"] + dongData)
        try Binary.ok(
            ["case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre"] + dongData)
        let sync = ["sync"] + seniorData + tls["senior"]! + ["--peer", "dong.office/server=\(dong.address)"]
        try Binary.ok(sync)
        try Binary.ok(["case", "note", caseID, "note-1"] + seniorData)
        try Binary.ok(sync)

        // A backup of the laptop, and one of the server while it serves.
        let backup = root + "/senior-backup.sqlite"
        let made = try Binary.ok(["backup", "--out", backup, "--json"] + seniorData)
        #expect(made.contains("\"sha256\""))
        #expect(FileManager.default.fileExists(atPath: backup + ".sha256"))
        let serverBackup = root + "/dong-backup.sqlite"
        try Binary.ok(["backup", "--out", serverBackup] + dongData)
        let again = try Binary.run(["backup", "--out", serverBackup] + dongData)
        #expect(again.status != 0 && again.stderr.contains("exists"), "a backup never overwrites a file")

        // After the backup: two more notes, synced to the server.
        try Binary.ok(["case", "note", caseID, "note-2"] + seniorData)
        try Binary.ok(["case", "note", caseID, "note-3"] + seniorData)
        try Binary.ok(sync)

        // A restore under the running server is refused.
        let underServe = try Binary.run(["restore", serverBackup] + dongData)
        #expect(underServe.status != 0 && underServe.stderr.contains("stop the node"), "\(underServe.stderr)")
        // The server's online backup restores into an empty directory and checks clean.
        try Binary.ok(["restore", serverBackup, "--data", root + "/dong-copy"])
        try Binary.ok(["check", "--data", root + "/dong-copy"])

        // A damaged backup is refused and the laptop's store is untouched.
        let damaged = root + "/damaged.sqlite"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: backup)))
        bytes[bytes.count / 2] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: damaged))
        try FileManager.default.copyItem(atPath: backup + ".sha256", toPath: damaged + ".sha256")
        let refused = try Binary.run(["restore", damaged] + seniorData)
        #expect(refused.status != 0 && refused.stderr.contains("does not match its checksum"), "\(refused.stderr)")
        #expect(try NetworkTests.show(root + "/senior", caseID)?.contains("note-3") == true)
        let unchecked = try Binary.run(["restore", root + "/dong-backup.sqlite.sha256"] + seniorData)
        #expect(unchecked.status != 0, "a file without its checksum is refused")

        // The restore: the laptop is back at note-1 and makes no change until it has synced.
        let restored = try Binary.ok(["restore", backup, "--json"] + seniorData)
        #expect(restored.contains("\"waiting_for\":[\"dong.office/server\"]"), "\(restored)")
        #expect(try NetworkTests.show(root + "/senior", caseID)?.contains("note-2") == false)
        let held = try Binary.run(["case", "note", caseID, "too-early"] + seniorData)
        #expect(held.status != 0 && held.stderr.contains("restored from a backup"), "\(held.stderr)")

        #expect(
            try Binary.ok(["status", "--json"] + seniorData).contains(
                "\"restore_waiting_for\":[\"dong.office/server\"]"))
        // Syncing brings back what it lost (its own notes, from the server)...
        try Binary.ok(sync)
        #expect(try Binary.ok(["status", "--json"] + seniorData).contains("\"restore_waiting_for\":[]"))
        let shown = try NetworkTests.show(root + "/senior", caseID) ?? ""
        for note in ["note-1", "note-2", "note-3"] { #expect(shown.contains(note), "\(note) is back") }
        #expect(!shown.contains("too-early"))
        // ...and its next change takes a number of its own: the server takes it.
        try Binary.ok(["case", "note", caseID, "note-4"] + seniorData)
        try Binary.ok(sync)
        let onServer = try NetworkTests.show(root + "/dong", caseID) ?? ""
        for note in ["note-1", "note-2", "note-3", "note-4"] {
            #expect(onServer.components(separatedBy: "\"\(note)\"").count == 2, "\(note) once on the server")
        }
        #expect(try Binary.ok(["quarantine"] + dongData) == "nothing quarantined")
        #expect(try ConsentTests.rows(root + "/dong", caseID)["pendingChange"] == 0, "nothing waits on the server")
        try Binary.ok(["check"] + seniorData)
        #expect(
            try NetworkTests.show(root + "/senior", caseID) == onServer, "both show the same case after the restore")
    }
}
