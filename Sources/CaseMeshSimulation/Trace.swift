import Foundation

/// A failing run's steps, written to a file that `casemesh harness --replay` runs again.
public struct SimulationTrace: Codable, Sendable {
    public var seed: UInt64
    public var replicas: Int
    public var violations: [String]
    public var steps: [SimulationStep]

    public init(seed: UInt64, replicas: Int, violations: [String], steps: [SimulationStep]) {
        self.seed = seed
        self.replicas = replicas
        self.violations = violations
        self.steps = steps
    }

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path))
    }

    public static func read(_ path: String) throws -> SimulationTrace {
        do {
            return try JSONDecoder().decode(SimulationTrace.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw SimulationError("cannot read the trace \(path): \(error)")
        }
    }
}

extension Simulation {
    /// Runs `steps` on fresh replicas and returns what the checks found.
    public static func replay(
        _ steps: [SimulationStep], configuration: SimulationConfiguration
    ) async throws -> SimulationReport {
        let directory = NSTemporaryDirectory() + "casemesh-replay-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        return try await Simulation(configuration: configuration, directory: directory).replay(steps)
    }

    /// The smallest sequence of steps found that still violates a property: removes
    /// chunks of steps, halving the chunk size, while the violation persists (delta
    /// debugging), within `attempts` replays.
    public static func shrink(
        _ steps: [SimulationStep], configuration: SimulationConfiguration, attempts: Int = 300
    ) async throws -> [SimulationStep] {
        var current = steps
        var chunk = max(1, current.count / 2)
        var tries = 0
        while tries < attempts {
            var index = 0
            var removedAny = false
            while index < current.count && tries < attempts {
                var candidate = current
                candidate.removeSubrange(index..<min(index + chunk, candidate.count))
                tries += 1
                if !(try await replay(candidate, configuration: configuration)).violations.isEmpty {
                    current = candidate
                    removedAny = true
                } else {
                    index += chunk
                }
            }
            if !removedAny {
                if chunk == 1 { break }
                chunk = max(1, chunk / 2)
            }
        }
        return current
    }
}
