import Foundation
import Testing

/// Installing a node as IT staff do: `scripts/install` into a prefix, the systemd
/// unit, and the example configuration file driving a real `serve`.
@Suite struct InstallTests {
    static let repository = ReadmeTourTests.repository.path

    @Test func installPutsTheBinaryTheCAScriptTheUnitAndTheExampleConfigurationInThePrefix() throws {
        let root = Binary.temporaryDirectory("install")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let prefix = root + "/prefix"
        let result = try TestAuthority.shell(
            "'\(Self.repository)/scripts/install' --prefix '\(prefix)' --binary '\(Binary.url.path)'")
        #expect(result.status == 0, "\(result.output)")
        for file in [
            "bin/casemesh", "bin/casemesh-ca", "share/casemesh/openssl-ca.cnf", "share/casemesh/casemesh.conf.example",
            "lib/systemd/system/casemesh.service",
        ] {
            #expect(FileManager.default.fileExists(atPath: prefix + "/" + file), "\(file) installed")
        }
        let unit = try String(contentsOfFile: prefix + "/lib/systemd/system/casemesh.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=\(prefix)/bin/casemesh serve --config /etc/casemesh/casemesh.conf"))
        for hardening in ["DynamicUser=yes", "StateDirectory=casemesh", "ProtectSystem=strict", "NoNewPrivileges=yes"] {
            #expect(unit.contains(hardening))
        }
        #expect(try TestAuthority.shell("'\(prefix)/bin/casemesh' --version").status == 0)
        // systemd's own check of the unit (CI installs systemd; a machine without it
        // has nothing to run the unit with either).
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") {
            let verify = try TestAuthority.shell(
                "systemd-analyze verify '\(prefix)/lib/systemd/system/casemesh.service' 2>&1")
            #expect(verify.status == 0 && !verify.output.contains("nknown"), "\(verify.output)")
        }
    }

    /// The example configuration, with this machine's files filled in, runs a node:
    /// its keys (serve's own among them) are all understood.
    @Test func theExampleConfigurationRunsANode() throws {
        let root = Binary.temporaryDirectory("example-config")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try TestAuthority(in: root)
        let files = try authority.issue("dong.office/server")
        try Binary.ok(["init", "--replica", "dong.office/server", "--data", root + "/data"])
        var text = try String(contentsOfFile: Self.repository + "/scripts/casemesh.conf.example", encoding: .utf8)
        let paths = Dictionary(
            uniqueKeysWithValues: stride(from: 0, to: files.count - 1, by: 2).map { (files[$0], files[$0 + 1]) })
        for (key, value) in [
            ("cert", paths["--cert"]!), ("key", paths["--key"]!), ("ca", paths["--ca"]!), ("crl", paths["--crl"]!),
        ] {
            text = text.replacingOccurrences(
                of: "/etc/casemesh/\(key == "cert" ? "node.pem" : key == "key" ? "node.key" : key + ".pem")",
                with: value)
        }
        text = text.replacingOccurrences(of: "listen = 0.0.0.0:7443", with: "listen = 127.0.0.1:0")
        text = text.replacingOccurrences(of: "http = 127.0.0.1:8080", with: "http = 127.0.0.1:0")
        try text.write(toFile: root + "/casemesh.conf", atomically: true, encoding: .utf8)
        let node = try NodeProcess(
            ["--config", root + "/casemesh.conf", "--data", root + "/data"], logPath: root + "/log")
        defer { node.stop() }
        let http = try #require(node.nextAnnouncement()?["port"] as? Int, "the http key of the file opened the web app")
        let live = try TestAuthority.shell(
            "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:\(http)/health/live")
        #expect(live.output == "200")
        #expect(node.stop() == 0)
        let lines = node.log.split(separator: "\n")
        #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("{") }, "log-format = json: \(lines.prefix(3))")
    }
}
