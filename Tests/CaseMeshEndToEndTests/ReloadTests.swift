import Foundation
import Testing

/// Renewing a node's certificate and revoking a peer without a restart: replace
/// the files, `casemesh reload` (SIGHUP).
@Suite struct ReloadTests {
    static func healthDaysLeft(_ port: Int) throws -> Int? {
        let body = try TestAuthority.shell("curl -s 'http://127.0.0.1:\(port)/health?cert_days=1'").output
        guard let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
            let checks = object["checks"] as? [String: Any], let certificate = checks["certificate"] as? [String: Any]
        else { return nil }
        return certificate["daysLeft"] as? Int
    }

    @Test func aReloadTakesARenewedCertificateAndANewCRLAndRefusesBadFiles() throws {
        let root = Binary.temporaryDirectory("reload")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root,
            ["dong": "dong.office/server", "senior": "senior.centre/laptop", "mental": "mental.centre/server"])
        let tls = consortium.tls
        // The files the node reads, which the operator replaces.
        let live = root + "/live"
        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: true)
        let dongFiles = tls["dong"]!
        func file(_ flag: String, in files: [String]) -> String { files[files.firstIndex(of: flag)! + 1] }
        for (flag, name) in [("--cert", "node.pem"), ("--key", "node.key"), ("--crl", "crl.pem")] {
            try FileManager.default.copyItem(atPath: file(flag, in: dongFiles), toPath: live + "/" + name)
        }
        let dong = try NodeProcess(
            consortium.data("dong") + [
                "--cert", live + "/node.pem", "--key", live + "/node.key", "--ca", file("--ca", in: dongFiles),
                "--crl", live + "/crl.pem", "--http", "127.0.0.1:0",
            ], logPath: root + "/dong.log")
        defer { dong.stop() }
        let http = try #require(dong.nextAnnouncement()?["port"] as? Int)
        func sync(_ short: String) throws -> Binary.Result {
            try Binary.run(
                ["sync"] + consortium.data(short) + tls[short]! + ["--peer", "dong.office/server=\(dong.address)"])
        }
        #expect(try sync("senior").status == 0)
        let before = try #require(try Self.healthDaysLeft(http))

        // Renewed for 100 days: the node serves the new certificate after the reload.
        let renewed = try TestAuthority.shell(
            "'\(TestAuthority.script)' renew '\(consortium.authority.directory)' dong.office/server --days 100")
        #expect(renewed.status == 0, "\(renewed.output)")
        let paths = renewed.output.split(separator: "\n").map(String.init)
        try FileManager.default.removeItem(atPath: live + "/node.pem")
        try FileManager.default.removeItem(atPath: live + "/node.key")
        try FileManager.default.copyItem(atPath: paths[0], toPath: live + "/node.pem")
        try FileManager.default.copyItem(atPath: paths[1], toPath: live + "/node.key")
        let reloaded = try Binary.run(["reload"] + consortium.data("dong"))
        #expect(
            reloaded.status == 0 && reloaded.stdout.contains("expires in 99 days"),
            "\(reloaded.stdout)\(reloaded.stderr)")
        #expect(try Self.healthDaysLeft(http) == 99 && before > 99)
        #expect(try sync("senior").status == 0, "peers accept the renewed certificate")

        // The laptop is revoked: the new CRL is taken without a restart.
        try consortium.authority.revoke("senior.centre/laptop")
        try FileManager.default.removeItem(atPath: live + "/crl.pem")
        try FileManager.default.copyItem(atPath: consortium.authority.directory + "/crl.pem", toPath: live + "/crl.pem")
        #expect(try Binary.run(["reload"] + consortium.data("dong")).status == 0)
        let refused = try sync("senior")
        #expect(refused.status != 0, "a revoked peer is refused after the reload")
        #expect(try sync("mental").status == 0)

        // Bad replacements are refused and the node keeps working on the files it has.
        try "not a certificate".write(toFile: live + "/node.pem", atomically: true, encoding: .utf8)
        let bad = try Binary.run(["reload"] + consortium.data("dong"))
        #expect(bad.status != 0 && bad.stderr.contains("old ones stay in use"), "\(bad.stderr)")
        try "-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n".write(
            toFile: live + "/crl.pem", atomically: true, encoding: .utf8)
        #expect(try sync("mental").status == 0, "the old certificate and CRL stay in use")
        #expect(try sync("senior").status != 0, "the revocation stays in force")
        #expect(dong.log.contains("reload refused"))
        // SIGHUP itself, as systemctl reload sends it, is answered the same way.
        kill(dong.process.processIdentifier, SIGHUP)
        #expect(
            eventually(5) { dong.process.isRunning && dong.log.components(separatedBy: "reload refused").count >= 3 })
        #expect(try sync("mental").status == 0)
    }

    /// A peer added to the configuration file is dialled after a reload, without a
    /// restart.
    @Test func aReloadTakesANewPeerFromTheConfigurationFile() throws {
        let root = Binary.temporaryDirectory("reload-peers")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["dong": "dong.office/server", "senior": "senior.centre/server"])
        let tls = consortium.tls
        let senior = try NodeProcess(consortium.data("senior") + tls["senior"]!, logPath: root + "/senior.log")
        defer { senior.stop() }
        let dongFiles = tls["dong"]!
        func file(_ flag: String) -> String { dongFiles[dongFiles.firstIndex(of: flag)! + 1] }
        let base =
            "cert = \(file("--cert"))\nkey = \(file("--key"))\nca = \(file("--ca"))\ncrl = \(file("--crl"))\ninterval = 1\n"
        let config = root + "/dong.conf"
        try base.write(toFile: config, atomically: true, encoding: .utf8)
        let dong = try NodeProcess(["--config", config] + consortium.data("dong"), logPath: root + "/dong.log")
        defer { dong.stop() }
        let caseID = try Binary.ok(["case", "open", "--field", "title=reload-peer"] + consortium.data("dong"))
        try Binary.ok(
            ["case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre"]
                + consortium.data("dong"))
        try (base + "peer = senior.centre/server=\(senior.address)\n").write(
            toFile: config, atomically: true, encoding: .utf8)
        let reloaded = try Binary.run(["reload"] + consortium.data("dong"))
        #expect(reloaded.status == 0 && reloaded.stdout.contains("1 peers"), "\(reloaded.stdout)\(reloaded.stderr)")
        #expect(
            eventually(15) { (try? NetworkTests.show(root + "/senior", caseID)) ?? nil != nil },
            "the new peer got the case without a restart")
        // A configuration that does not parse is refused; the node keeps its peers.
        try "peer = not-a-peer\n".write(toFile: config, atomically: true, encoding: .utf8)
        let bad = try Binary.run(["reload"] + consortium.data("dong"))
        #expect(bad.status != 0 && bad.stderr.contains("configuration was refused"), "\(bad.stderr)")
    }

    /// Whether a TCP connection to this local port is established (from /proc/net/tcp).
    static func established(toPort port: Int) -> Bool {
        // Read to the end with read(2): procfs files report size 0, and a reader that
        // trusts the size gets one page of the table (some 27 sockets) at most.
        var bytes: [UInt8] = []
        let descriptor = open("/proc/net/tcp", O_RDONLY)
        if descriptor >= 0 {
            var chunk = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = read(descriptor, &chunk, chunk.count)
                guard count > 0 else { break }
                bytes += chunk[..<count]
            }
            close(descriptor)
        }
        let table = String(decoding: bytes, as: UTF8.self)
        let local = String(format: ":%04X", port)
        return table.split(separator: "\n").contains { line in
            let columns = line.split(separator: " ")
            return columns.count > 3 && columns[1].hasSuffix(local) && columns[3] == "01"
        }
    }

    @Test func aSyncInProgressCompletesAcrossAReload() throws {
        let root = Binary.temporaryDirectory("reload-in-flight")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["dong": "dong.office/server", "senior": "senior.centre/server"])
        let tls = consortium.tls
        try Binary.ok(["bench", "seed", "--cases", "1500", "--shared-with", "senior.centre"] + consortium.data("dong"))
        let dongFiles = tls["dong"]!
        func file(_ flag: String) -> String { dongFiles[dongFiles.firstIndex(of: flag)! + 1] }
        let live = root + "/live"
        try FileManager.default.createDirectory(atPath: live, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: file("--cert"), toPath: live + "/node.pem")
        try FileManager.default.copyItem(atPath: file("--key"), toPath: live + "/node.key")
        let dong = try NodeProcess(
            consortium.data("dong") + [
                "--cert", live + "/node.pem", "--key", live + "/node.key", "--ca", file("--ca"), "--crl", file("--crl"),
            ], logPath: root + "/dong.log")
        defer { dong.stop() }

        // The senior centre starts pulling; it is stopped mid-session, the dong office
        // reloads a renewed certificate, and the session goes on.
        let client = Process()
        client.executableURL = Binary.url
        client.arguments =
            ["sync", "--json"] + consortium.data("senior") + tls["senior"]! + [
                "--peer", "dong.office/server=\(dong.address)",
            ]
        let output = Pipe()
        client.standardOutput = output
        client.standardError = FileHandle.nullDevice
        try client.run()
        // Polled every millisecond: the client is stopped within a few of connecting,
        // long before a session of 1,500 changes can end.
        let deadline = Date().addingTimeInterval(30)
        while !Self.established(toPort: dong.port), client.isRunning, Date() < deadline { usleep(1000) }
        kill(client.processIdentifier, SIGSTOP)
        let inFlight = Self.established(toPort: dong.port)
        let renewed = try TestAuthority.shell(
            "'\(TestAuthority.script)' renew '\(consortium.authority.directory)' dong.office/server --days 100")
        let paths = renewed.output.split(separator: "\n").map(String.init)
        for (from, to) in zip(paths, ["node.pem", "node.key"]) {
            try FileManager.default.removeItem(atPath: live + "/" + to)
            try FileManager.default.copyItem(atPath: from, toPath: live + "/" + to)
        }
        let reloaded = try Binary.run(["reload"] + consortium.data("dong"))
        kill(client.processIdentifier, SIGCONT)
        #expect(reloaded.status == 0 && reloaded.stdout.contains("expires in 99 days"), "\(reloaded.stderr)")
        #expect(inFlight, "the session was in flight at the reload")
        let report = output.fileHandleForReading.readDataToEndOfFile()
        client.waitUntilExit()
        #expect(client.terminationStatus == 0, "\(String(decoding: report, as: UTF8.self))")
        let listed = try JSONSerialization.jsonObject(
            with: Data(try Binary.ok(["case", "list", "--json"] + consortium.data("senior")).utf8))
        #expect((listed as? [[String: Any]])?.count == 1500, "every case arrived")
        // New connections use the renewed certificate.
        #expect(
            try Binary.run(
                ["sync"] + consortium.data("senior") + tls["senior"]! + [
                    "--peer", "dong.office/server=\(dong.address)",
                ]
            ).status == 0)
    }

    /// A renewal keeps the node's key, so what it sealed before verifies with the
    /// new certificate on a node that receives it only afterwards.
    @Test func changesSealedBeforeARenewalVerifyOnAPeerThatPullsThemAfterIt() throws {
        let root = Binary.temporaryDirectory("renew-history")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root,
            ["dong": "dong.office/server", "senior": "senior.centre/server", "mental": "mental.centre/server"])
        let tls = consortium.tls
        let caseID = try Binary.ok(["case", "open", "--field", "riskLevel=high"] + consortium.data("dong"))
        for institution in ["senior.centre", "mental.centre"] {
            try Binary.ok(
                ["case", "share", caseID, institution, "--allow-new-institution", institution]
                    + consortium.data("dong"))
        }
        // Sealed with the first certificate's key when the node starts.
        let first = try NodeProcess(consortium.data("dong") + tls["dong"]!, logPath: root + "/first.log")
        #expect(first.stop() == 0)
        let renewed = try TestAuthority.shell(
            "'\(TestAuthority.script)' renew '\(consortium.authority.directory)' dong.office/server --days 100")
        #expect(renewed.status == 0, "\(renewed.output)")
        let paths = renewed.output.split(separator: "\n").map(String.init)
        let dong = try NodeProcess(
            consortium.data("dong") + [
                "--cert", paths[0], "--key", paths[1], "--ca", consortium.authority.directory + "/ca.pem", "--crl",
                consortium.authority.directory + "/crl.pem",
            ], logPath: root + "/dong.log")
        defer { dong.stop() }
        let synced = try Binary.run(
            ["sync", "--json"] + consortium.data("senior") + tls["senior"]! + [
                "--peer", "dong.office/server=\(dong.address)",
            ])
        #expect(synced.status == 0, "\(synced.stderr)")
        #expect(try NetworkTests.show(root + "/senior", caseID) != nil, "the case arrived, not quarantined")
        let quarantined = try Binary.ok(["quarantine", "list", "--json"] + consortium.data("senior"))
        #expect(quarantined.trimmingCharacters(in: .whitespacesAndNewlines) == "[]", "\(quarantined)")

        // Rotating the key instead (after a compromise) costs what the threat model
        // says: a node that pulls the older changes only now quarantines them, saying why.
        #expect(dong.stop() == 0)
        let rotated = try TestAuthority.shell(
            "'\(TestAuthority.script)' renew '\(consortium.authority.directory)' dong.office/server --new-key")
        let rotatedPaths = rotated.output.split(separator: "\n").map(String.init)
        let again = try NodeProcess(
            consortium.data("dong") + [
                "--cert", rotatedPaths[0], "--key", rotatedPaths[1], "--ca", consortium.authority.directory + "/ca.pem",
                "--crl", consortium.authority.directory + "/crl.pem",
            ], logPath: root + "/again.log")
        defer { again.stop() }
        _ = try Binary.run(
            ["sync"] + consortium.data("mental") + tls["mental"]! + ["--peer", "dong.office/server=\(again.address)"])
        let kept = try Binary.ok(["quarantine", "list", "--json"] + consortium.data("mental"))
        #expect(kept.contains("sealed with a key dong.office/server has since replaced"), "\(kept)")
    }
}
