import Foundation
import Testing

/// The consortium directory, published by `casemesh-ca directory` and used by real
/// `casemesh serve` processes over mutual TLS on loopback.
@Suite(.serialized) struct DirectoryTests {
    /// Runs `casemesh-ca directory CA ARGUMENTS`; returns the published file's path.
    static func publish(_ authority: TestAuthority, _ arguments: [String]) throws -> String {
        let quoted = arguments.map { "'\($0)'" }.joined(separator: " ")
        let result = try TestAuthority.shell("'\(TestAuthority.script)' directory '\(authority.directory)' \(quoted)")
        #expect(result.status == 0, "casemesh-ca directory: \(result.output)")
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func nodesFindTheirPeersMembersAndNamesInTheSignedDirectory() throws {
        let root = Binary.temporaryDirectory("directory")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root, ["dong": "dong.office/server", "senior": "senior.centre/server"])
        let senior = try NodeProcess(
            consortium.data("senior") + consortium.tls["senior"]!, logPath: root + "/senior.log")
        defer { senior.stop() }
        let authority = consortium.authority
        _ = try Self.publish(
            authority,
            [
                "--add", "dong.office", "--name", "중앙동 행정복지센터", "--kind", "dong-office", "--region", "동두천시",
                "--covers", "중앙동,생연동", "--node", "dong.office/server=127.0.0.1:9",
            ])
        let published = try Self.publish(
            authority,
            [
                "--add", "senior.centre", "--name", "동두천시 노인복지관", "--kind", "senior-welfare-centre",
                "--region", "동두천시", "--node", "senior.centre/server=\(senior.address)",
            ])
        // The node reads its own copy; the CA's file is what an operator distributes.
        let directoryFile = root + "/directory.json"
        try FileManager.default.copyItem(atPath: published, toPath: directoryFile)
        let secondSerial = try Data(contentsOf: URL(fileURLWithPath: directoryFile))

        // No --peer: the dong office finds the senior centre's node in the directory
        // once it shares a case with it.
        let dong = try NodeProcess(
            consortium.data("dong") + consortium.tls["dong"]! + ["--directory", directoryFile, "--interval", "0.3"],
            logPath: root + "/dong.log")
        defer { dong.stop() }
        let caseID = try Binary.ok(["case", "open", "--field", "riskLevel=high"] + consortium.data("dong"))
        let refused = try Binary.run(
            ["case", "share", caseID, "community.centre", "--allow-new-institution", "community.centre"]
                + consortium.data("dong"))
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("not a member of the consortium directory"), "\(refused.stderr)")
        try Binary.ok(["case", "share", caseID, "senior.centre"] + consortium.data("dong"))
        #expect(
            try eventually(30) {
                try Binary.run(["case", "show", caseID, "--data", root + "/senior"]).status == 0
            }, "the case reached the senior centre through the directory's address")
        #expect(dong.log.contains("동두천시 노인복지관"), "logs name the institution")
        #expect(try Binary.ok(["peers"] + consortium.data("dong")).contains("동두천시 노인복지관"))
        let status =
            try JSONSerialization.jsonObject(
                with: Data(try Binary.ok(["status", "--json"] + consortium.data("dong")).utf8)) as! [String: Any]
        #expect((status["directory"] as? [String: Any])?["serial"] as? Int == 2)
        let shown =
            try JSONSerialization.jsonObject(
                with: Data(try Binary.ok(["directory", "show", "--json"] + consortium.data("dong")).utf8))
            as! [String: Any]
        #expect(shown["serial"] as? Int == 2)
        #expect((shown["members"] as? [[String: Any]])?.first?["covers"] as? [String] == ["중앙동", "생연동"])

        // A tampered replacement (a name changed under the CA's signature) is refused
        // on reload; the directory in use stays, and so does sync.
        var envelope = try JSONSerialization.jsonObject(with: secondSerial) as! [String: Any]
        let payload = String(decoding: Data(base64Encoded: envelope["payload"] as! String)!, as: UTF8.self)
        envelope["payload"] = Data(payload.replacingOccurrences(of: "노인복지관", with: "노인요양원").utf8)
            .base64EncodedString()
        try JSONSerialization.data(withJSONObject: envelope).write(to: URL(fileURLWithPath: directoryFile))
        let tampered = try Binary.run(["reload"] + consortium.data("dong"))
        #expect(tampered.status != 0 && tampered.stderr.contains("signature"), "\(tampered.stderr)")
        try Binary.ok(["case", "note", caseID, "가정방문 일정 확인"] + consortium.data("dong"))
        #expect(
            try eventually(30) {
                try Binary.run(["case", "show", caseID, "--data", root + "/senior"]).stdout.contains("가정방문")
            }, "the node syncs on with the directory in use")
        #expect(try Binary.ok(["directory", "show"] + consortium.data("dong")).contains("동두천시 노인복지관"))

        // A newer directory takes effect at the next round without a reload; an
        // older one (a replay of serial 2) is then refused.
        let third = try Self.publish(authority, ["--remove", "dong.office"])
        try FileManager.default.removeItem(atPath: directoryFile)
        try FileManager.default.copyItem(atPath: third, toPath: directoryFile)
        #expect(
            try eventually(30) {
                try Binary.ok(["directory", "show", "--json"] + consortium.data("dong")).contains("\"serial\":3")
            })
        try secondSerial.write(to: URL(fileURLWithPath: directoryFile))
        let replay = try Binary.run(["reload"] + consortium.data("dong"))
        #expect(replay.status != 0 && replay.stderr.contains("older than serial 3"), "\(replay.stderr)")
        #expect(dong.stop() == 0 && senior.stop() == 0)
    }
}
