import Foundation
import GRDB
import Testing

/// A node whose disk fills up: a case worker can still read the household's case,
/// and every read is still recorded.
@Suite struct FullDiskTests {
    /// A small file system of its own (tmpfs), so the test fills a real disk and not
    /// the machine's; mounting needs root, which CI and this machine have.
    static let canMount: Bool = {
        let probe = Binary.temporaryDirectory("mount-probe")
        defer { try? FileManager.default.removeItem(atPath: probe) }
        guard shell("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe) == 0 else { return false }
        _ = shell("umount", probe)
        return true
    }()

    @discardableResult
    static func shell(_ arguments: String...) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test(.enabled(if: canMount, "needs root to mount a small tmpfs"), .timeLimit(.minutes(2)))
    func readsWorkOnAFullDiskAndTheirAccessEntriesLandOnceThereIsRoom() throws {
        let mount = Binary.temporaryDirectory("full-disk")
        defer { try? FileManager.default.removeItem(atPath: mount) }
        #expect(Self.shell("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", mount) == 0)
        defer { Self.shell("umount", "-l", mount) }
        let data = ["--data", mount + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        let caseID = try Binary.ok(["case", "open", "--field", "title=홀몸 어르신 위기 신고"] + data)
        try Binary.ok(["case", "note", caseID, "가정방문: 난방 끊김"] + data)

        // Fill the disk to the last byte.
        let filler = mount + "/filler"
        #expect(FileManager.default.createFile(atPath: filler, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: filler))
        func fill() {
            for size in [64 << 10, 4096, 512, 1] {
                while (try? handle.write(contentsOf: Data(repeating: 0x55, count: size))) != nil {}
            }
        }
        fill()
        // SQLite cannot open a WAL database on a full disk (each process rebuilds the
        // -shm index): the first read gives back the room kept for it in the reserve.
        let first = try Binary.run(["case", "show", caseID] + data)
        #expect(first.status == 0, "the first read on a full disk: \(first.stderr)")
        // A running node holds the store open (its -shm index stays built, as under
        // `serve`), and something else takes the room the first read gave back.
        let node = try DatabasePool(path: mount + "/dong/casemesh.sqlite")
        _ = try node.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM caseRecord") }
        fill()
        try? handle.close()

        // Reads go on; a write is refused with a reason and changes nothing.
        for _ in 0..<3 {
            let shown = try Binary.run(["case", "show", caseID] + data)
            #expect(shown.status == 0, "case show on a full disk: \(shown.stderr)")
            #expect(shown.stdout.contains("난방 끊김"))
        }
        let listed = try Binary.run(["case", "list"] + data)
        #expect(listed.status == 0 && listed.stdout.contains(caseID), "case list on a full disk: \(listed.stderr)")
        let refused = try Binary.run(["case", "note", caseID, "쓰지 못할 메모"] + data)
        #expect(refused.status != 0 && refused.stderr.contains("full"), "\(refused.stderr)")

        // Room again: the reads' entries move into the access log on the next access,
        // each with the time of the read.
        try node.close()
        try FileManager.default.removeItem(atPath: filler)
        try Binary.ok(["case", "note", caseID, "다시 기록"] + data)
        let audit = try Binary.ok(["audit", "--case", caseID] + data).split(separator: "\n")
        let delayed = audit.filter { $0.contains("the disk was full") }
        #expect(delayed.filter { $0.contains("via casemesh case show") }.count >= 3, "\(audit)")
        #expect(audit.filter { $0.contains("via casemesh case show") }.count == 4, "every read is recorded")
        #expect(delayed.filter { $0.contains("via casemesh case list") }.count == 1, "\(audit)")
        let shown = try Binary.ok(["case", "show", caseID] + data)
        #expect(shown.contains("다시 기록") && !shown.contains("쓰지 못할 메모"))
    }
}
