import CaseMeshSimulation
import Foundation
import Testing

/// Every scripted story under `scenarios/` plays out as its expectations say.
@Suite struct ScenarioTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scenarios").path

    static let files: [String] = {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".json") }
            .sorted()
    }()

    @Test func thereAreAtLeastTenScenarios() {
        #expect(Self.files.count >= 10)
    }

    @Test(arguments: files)
    func scenarioHoldsItsExpectations(file: String) async throws {
        let scenario = try Scenario.load(Self.directory + "/" + file)
        let workspace = NSTemporaryDirectory() + "casemesh-scenario-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: workspace) }
        let failures = try await ScenarioRunner().run(scenario, directory: workspace)
        #expect(failures.isEmpty, "\(scenario.name): \(failures.joined(separator: "; "))")
        #expect(!scenario.expect.isEmpty)
    }
}
