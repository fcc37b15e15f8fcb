import Foundation
import Testing

/// What a node's IT staff watch: health and metrics of real `serve` processes.
@Suite(.serialized) struct OperatorTests {
    /// The value of one sample line (`name{labels} value`) in Prometheus text, or nil.
    static func sample(_ text: String, _ name: String, _ labels: [String] = []) -> Double? {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard line.hasPrefix(name + "{") || line.hasPrefix(name + " ") else { continue }
            guard labels.allSatisfy({ line.contains($0) }) else { continue }
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }

    @Test(.timeLimit(.minutes(3)))
    func healthFollowsAPeerThatGoesAwayAndComesBackAndMetricsCountWhatSyncs() throws {
        let root = Binary.temporaryDirectory("operator")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root, ["dong": "dong.office/server", "senior": "senior.centre/server"])
        var senior = try NodeProcess(
            consortium.data("senior") + consortium.tls["senior"]!, logPath: root + "/senior.log")
        let seniorPort = senior.port
        let caseID = try Binary.ok(["case", "open", "--field", "riskLevel=high"] + consortium.data("dong"))
        try Binary.ok(
            ["case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre"]
                + consortium.data("dong"))
        let dong = try NodeProcess(
            consortium.data("dong") + consortium.tls["dong"]! + [
                "--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--interval", "1",
                "--peer", "senior.centre/server=127.0.0.1:\(seniorPort)",
            ], logPath: root + "/dong.log")
        defer {
            dong.stop()
            senior.stop()
        }
        var ports: [String: Int] = [:]
        for _ in 0..<2 {
            let announced = try #require(dong.nextAnnouncement())
            ports[announced["event"] as? String ?? ""] = announced["port"] as? Int
        }
        let http = APIClient(base: "http://127.0.0.1:\(try #require(ports["http-listening"]))")
        let admin = APIClient(base: "http://127.0.0.1:\(try #require(ports["admin-listening"]))")

        #expect(try http.call("GET", "/health/live").status == 200)
        #expect(try http.call("GET", "/health/ready").status == 200)
        // Synced: healthy, with each check named.
        #expect(try eventually(20) { try http.call("GET", "/health?sync_age=3").status == 200 })
        let healthy = try http.call("GET", "/health?sync_age=3")
        let checks = healthy.json["checks"] as? [String: Any] ?? [:]
        #expect(
            Set(checks.keys).isSuperset(of: ["store", "peers", "certificate", "crl", "quarantine", "pending", "schema"])
        )
        #expect(try http.call("GET", "/health?sync_age=banana").status == 400)

        // Metrics, on both listeners, count the sync that sent the shared case.
        let metrics = try admin.call("GET", "/metrics")
        #expect(metrics.status == 200 && metrics.headers.contains("text/plain"))
        #expect(Self.sample(metrics.body, "casemesh_sync_rounds_total", [#"peer="senior.centre/server""#]) ?? 0 >= 1)
        let sentBefore = Self.sample(metrics.body, "casemesh_changes_sent_total") ?? 0
        #expect(sentBefore >= 1, "\(metrics.body)")
        #expect(Self.sample(metrics.body, "casemesh_cases_held") == 1)
        #expect(Self.sample(metrics.body, "casemesh_certificate_expiry_seconds") ?? 0 > 3600)
        #expect(Self.sample(metrics.body, "casemesh_wire_bytes_total", [#"direction="sent""#]) ?? 0 > 0)
        #expect(Self.sample(metrics.body, "hb_requests", [#"http_route="/health""#]) ?? 0 >= 1)
        #expect(!metrics.body.contains(caseID), "no case identifier in a metric")
        try Binary.ok(["case", "note", caseID, "방문 상담 완료"] + consortium.data("dong"))
        #expect(
            try eventually(20) {
                Self.sample(try http.call("GET", "/metrics").body, "casemesh_changes_sent_total") ?? 0 > sentBefore
            }, "the counter moves as the note syncs")

        // The peer goes away: past the threshold, 503 naming the peers check.
        senior.stop()
        #expect(try eventually(20) { try http.call("GET", "/health?sync_age=2").status == 503 })
        let failing = try admin.call("GET", "/health?sync_age=2")
        #expect((failing.json["failing"] as? [String]) == ["peers"], "\(failing.body)")
        // It comes back on its address: healthy again.
        senior = try NodeProcess(
            consortium.data("senior") + consortium.tls["senior"]! + ["--listen", "127.0.0.1:\(seniorPort)"],
            logPath: root + "/senior-2.log")
        #expect(try eventually(60) { try http.call("GET", "/health?sync_age=3").status == 200 })
    }

    @Test(.timeLimit(.minutes(2)))
    func jsonLogLinesAndForgettingAPeer() throws {
        let root = Binary.temporaryDirectory("operator-logs")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root, ["dong": "dong.office/server", "senior": "senior.centre/server"])
        let senior = try NodeProcess(
            consortium.data("senior") + consortium.tls["senior"]!, logPath: root + "/senior.log")
        // One round with a peer that answers and one that does not, logged as JSON lines.
        let sync = try Binary.run(
            [
                "sync", "--log-format", "json", "--peer", "senior.centre/server=\(senior.address)", "--peer",
                "mental.centre/server=127.0.0.1:1",
            ] + consortium.data("dong") + consortium.tls["dong"]!)
        senior.stop()
        // Every log line is JSON; the command's own last word (its exit message) is not a log line.
        let lines = sync.stderr.split(separator: "\n").filter { !$0.isEmpty && !$0.hasPrefix("Error: ") }
        #expect(!lines.isEmpty)
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["level"] != nil && object?["message"] != nil, "not a JSON log line: \(line)")
        }
        #expect(sync.stderr.contains("cannot reach peer") && sync.stderr.contains("mental.centre/server"))
        #expect(try Binary.run(["sync", "--log-format", "xml"] + consortium.data("dong")).status != 0)

        // The node remembers both peers; forgetting one leaves the other.
        let before = try Binary.ok(["peers", "--json"] + consortium.data("dong"))
        #expect(before.contains("senior.centre/server") && before.contains("mental.centre/server"))
        #expect(
            try Binary.ok(["peers", "forget", "mental.centre/server"] + consortium.data("dong")).contains("forgot"))
        let after = try Binary.ok(["peers", "--json"] + consortium.data("dong"))
        #expect(after.contains("senior.centre/server") && !after.contains("mental.centre/server"))
        let again = try Binary.run(["peers", "forget", "mental.centre/server"] + consortium.data("dong"))
        #expect(again.status != 0 && again.stderr.contains("no record"))
    }
}
