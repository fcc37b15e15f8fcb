import Foundation
import Testing

/// `casemesh harness --processes`: real `serve` processes on loopback, edits through
/// the command line while they serve, kill -9, SIGSTOP, a wrong clock and a revoked
/// laptop; the properties checked from outside (a bounded run; the 30-minute run's
/// figures are in the README).
@Suite(.serialized) struct ProcessHarnessTests {
    @Test func realNodesUnderFaultsConvergeWithNothingLostOrStuck() throws {
        let result = try Binary.run([
            "harness", "--processes", "--runs", "2", "--steps", "30", "--seed", "11", "--json",
        ])
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        #expect(report["runs"] as? Int == 2)
        #expect((report["violations"] as? [Any])?.isEmpty == true, "\(report["violations"] ?? "")")
        // The faults happened: nodes were killed or stopped, a laptop was revoked in
        // each run, and most edits were acknowledged.
        #expect((report["kills"] as? Int ?? 0) + (report["stops"] as? Int ?? 0) > 0)
        #expect(report["revocations"] as? Int == 2)
        #expect(report["edits"] as? Int ?? 0 > 30)
    }

    @Test func anUnknownFaultIsRefusedWithTheKnownOnes() throws {
        let result = try Binary.run(["harness", "--processes", "--faults", "kill,partition"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("unknown fault 'partition' for --processes; known: kill, stop, skew, revoke"))
    }
}
