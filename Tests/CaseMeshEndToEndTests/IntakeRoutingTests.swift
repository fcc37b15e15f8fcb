import Foundation
import Testing

/// A report taken by a city-level node's 24-hour channel reaches the dong office
/// that covers the household, over sync, under the statutory basis for discovery.
@Suite struct IntakeRoutingTests {
    @Test func aCityNodeRoutesAReportToTheDongOfficeByTheHouseholdsDong() throws {
        let root = Binary.temporaryDirectory("intake-routing")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root, ["city": "dongducheon.care-centre/server", "dong": "dongducheon.jungang-dong/server"])
        let tls = consortium.tls
        let routing = root + "/routing.json"
        try #"{"routes": {"중앙동": "dongducheon.jungang-dong", "생연1동": "dongducheon.saengyeon1-dong"}}"#.write(
            toFile: routing, atomically: true, encoding: .utf8)
        let key = try Binary.ok(["intake-key", "add", "kakao-24h"] + consortium.data("city"))
        // A routing file that does not load stops serve with the reason.
        try "{}".write(toFile: root + "/bad.json", atomically: true, encoding: .utf8)
        let bad = try Binary.run(
            ["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--intake-routing", root + "/bad.json"]
                + consortium.data("city") + tls["city"]!)
        #expect(bad.status != 0 && bad.stderr.contains("expected {\"routes\""), "\(bad.stderr)")

        let city = try NodeProcess(
            consortium.data("city") + tls["city"]! + ["--http", "127.0.0.1:0", "--intake-routing", routing],
            logPath: root + "/city.log")
        defer { city.stop() }
        let http = try #require(city.nextAnnouncement()?["port"] as? Int)
        func report(_ id: String, dong: String) throws -> [String: Any] {
            let body =
                #"{"messageId": "\#(id)", "channel": "kakao", "summary": "이웃 제보", "dong": "\#(dong)", "riskLevel": "high"}"#
            let result = try TestAuthority.shell(
                "curl -s -X POST http://127.0.0.1:\(http)/api/v1/intake -H 'Authorization: Bearer \(key)' "
                    + "-H 'Content-Type: application/json' -d '\(body)'")
            return (try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
        }
        let routed = try report("m-1", dong: "중앙동")
        #expect(routed["routedTo"] as? String == "dongducheon.jungang-dong", "\(routed)")
        let unrouted = try report("m-2", dong: "어느동")
        #expect(unrouted["routedTo"] == nil)
        let routedCase = try #require(routed["case"] as? String)
        let unroutedCase = try #require(unrouted["case"] as? String)
        #expect(try NetworkTests.show(root + "/city", unroutedCase)?.contains("unrouted") == true)

        // The dong office's node gets the routed report at its next sync, waiting in its intake queue.
        try Binary.ok(
            ["sync"] + consortium.data("dong") + tls["dong"]!
                + ["--peer", "dongducheon.care-centre/server=\(city.address)"])
        let shown = try #require(try NetworkTests.show(root + "/dong", routedCase))
        #expect(shown.contains("discovery") && shown.contains("social-security-benefits-act"), "\(shown.prefix(2000))")
        #expect(try NetworkTests.show(root + "/dong", unroutedCase) == nil, "an unrouted report stays at the city node")
    }
}
