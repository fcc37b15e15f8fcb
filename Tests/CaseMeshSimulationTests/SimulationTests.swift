import CaseMeshSimulation
import Foundation
import Testing

/// Seeded simulations of five institutions under every fault: partitions, cut
/// connections, duplicated and reordered deliveries, restarts with unflushed state,
/// a clock three days ahead, participants joining and leaving. Each chunk runs 20
/// seeds; a failure names the seed (`casemesh harness --seed N --runs 1` replays it).
@Suite struct SimulationTests {
    @Test(arguments: 0..<5)
    func randomRunsUnderAllFaultsViolateNothing(chunk: Int) throws {
        for seed in UInt64(chunk * 20 + 1)...UInt64(chunk * 20 + 20) {
            var configuration = SimulationConfiguration()
            configuration.replicas = 5
            configuration.cases = 4
            configuration.steps = 80
            configuration.seed = seed
            let directory = NSTemporaryDirectory() + "casemesh-sim-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let report = try Simulation(configuration: configuration, directory: directory).run()
            #expect(report.violations.isEmpty, "seed \(seed): \(report.violations.first ?? "")")
            #expect(report.changes > 0 && report.syncs > 0, "seed \(seed) did something")
        }
    }

    @Test func theSameSeedReplaysTheSameRun() throws {
        func run() throws -> SimulationReport {
            var configuration = SimulationConfiguration()
            configuration.seed = 4242
            let directory = NSTemporaryDirectory() + "casemesh-sim-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: directory) }
            return try Simulation(configuration: configuration, directory: directory).run()
        }
        let first = try run()
        let second = try run()
        #expect((first.changes, first.syncs, first.conflicts) == (second.changes, second.syncs, second.conflicts))
    }
}
