import ArgumentParser
import CaseMeshOperations
import CaseMeshSimulation
import Foundation

/// `casemesh harness`: seeded simulations of many institutions under faults, with
/// every property of joint case management checked at the end of each run.
struct HarnessCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "harness",
        abstract: "Simulate many institutions' replicas under faults and check that nothing is lost or overwritten.",
        discussion: """
            Each run uses real stores (SQLite in a temporary directory), a certificate per replica from the \
            run's own CA and the production sync driver (seals, signer and CRL checks, writer checks) over a \
            simulated network, driven by its seed (--seed, then seed+1, ...). Faults: \
            \(SimulationFault.allCases.map(\.rawValue).joined(separator: ", ")). Exits non-zero on a \
            violation, naming the seed that reproduces it.
            """)

    @Option(help: "Replicas (one per institution).") var replicas = 4
    @Option(help: "Cases opened at most.") var cases = 3
    @Option(help: "Random steps per run.") var steps = 60
    @Option(help: "The first run's seed.") var seed: UInt64 = 1
    @Option(help: "Runs.") var runs = 1
    @Option(help: "Faults to inject, comma-separated, or 'all' or 'none'.") var faults = "all"
    @Option(help: "Play a scripted scenario (JSON, see scenarios/) instead of random runs.") var scenario: String?
    @Option(help: "Run a trace file written by a failing run again.") var replay: String?
    @Option(help: "Where a failing run's shrunk trace is written.") var traceOut = "casemesh-harness-failure.json"
    @Flag(
        help: """
            Run real 'casemesh serve' processes on loopback instead of the simulator: edits through the \
            command line while they serve; faults kill (kill -9), stop (SIGSTOP), skew (faketime), revoke.
            """)
    var processes = false
    @Option(help: "With --processes: start no new run after this many minutes (runs until --runs otherwise).")
    var minutes: Double?
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard replicas >= 2, cases >= 1, steps >= 1, runs >= 1 else {
            throw ValidationError("--replicas must be at least 2; --cases, --steps and --runs at least 1")
        }
        if processes { _ = try processFaults() } else { _ = try parsedFaults() }
        if let minutes, !(minutes > 0 && minutes <= 24 * 60) {
            throw ValidationError("--minutes must be between 0 and 1440")
        }
    }

    func processFaults() throws -> Set<ProcessHarness.Fault> {
        let known = ProcessHarness.Fault.allCases.map(\.rawValue).joined(separator: ", ")
        switch faults {
        case "all": return Set(ProcessHarness.Fault.allCases)
        case "none", "": return []
        default:
            return Set(
                try faults.split(separator: ",").map { name in
                    guard let fault = ProcessHarness.Fault(rawValue: String(name)) else {
                        throw ValidationError("unknown fault '\(name)' for --processes; known: \(known)")
                    }
                    return fault
                })
        }
    }

    func parsedFaults() throws -> Set<SimulationFault> {
        switch faults {
        case "all": return Set(SimulationFault.allCases)
        case "none", "": return []
        default:
            return Set(
                try faults.split(separator: ",").map { name in
                    guard let fault = SimulationFault(rawValue: String(name)) else {
                        throw ValidationError(
                            "unknown fault '\(name)'; known: \(SimulationFault.allCases.map(\.rawValue).joined(separator: ", "))"
                        )
                    }
                    return fault
                })
        }
    }

    func run() async throws {
        if let scenario { return try await play(scenario) }
        if let replay { return try await replayTrace(replay) }
        if processes { return try await runProcesses() }
        var configuration = SimulationConfiguration()
        configuration.replicas = replicas
        configuration.cases = cases
        configuration.steps = steps
        configuration.faults = try parsedFaults()
        var totals = (steps: 0, changes: 0, syncs: 0, conflicts: 0)
        var failures: [SimulationReport] = []
        let started = ContinuousClock.now
        for run in 0..<runs {
            configuration.seed = seed &+ UInt64(run)
            let directory = NSTemporaryDirectory() + "casemesh-harness-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let report: SimulationReport
            do {
                report = try await Simulation(configuration: configuration, directory: directory).run()
            } catch {
                throw CLIError(message: "seed \(configuration.seed): the simulation failed: \(error)")
            }
            totals.steps += report.steps
            totals.changes += report.changes
            totals.syncs += report.syncs
            totals.conflicts += report.conflicts
            if !report.violations.isEmpty { failures.append(report) }
        }
        let seconds = (ContinuousClock.now - started).seconds
        let summary: [String: JSONValue] = [
            "runs": .number(Int64(runs)), "steps": .number(Int64(totals.steps)),
            "changes": .number(Int64(totals.changes)),
            "syncs": .number(Int64(totals.syncs)), "conflicts_seen": .number(Int64(totals.conflicts)),
            "violations": .array(
                failures.flatMap { report in
                    report.violations.map {
                        JSONValue.object(["seed": .number(Int64(report.seed)), "violation": .string($0)])
                    }
                }),
            "seconds": .double(seconds), "first_seed": .number(Int64(seed)),
            "faults": .array(configuration.faults.map(\.rawValue).sorted().map(JSONValue.string)),
        ]
        if output.json {
            emit(JSONValue.object(summary).text)
        } else {
            emit(
                "\(runs) runs, \(totals.steps) steps, \(totals.changes) changes, \(totals.syncs) syncs, "
                    + "\(totals.conflicts) conflicts seen, \(failures.count) runs with violations (\(Int(seconds)) s)")
        }
        if let first = failures.first {
            // Shrink the first failing run to the fewest steps that still fail, for --replay.
            configuration.seed = first.seed
            let directory = NSTemporaryDirectory() + "casemesh-harness-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let failing = try Simulation(configuration: configuration, directory: directory)
            _ = try await failing.run()
            let shrunk = try await Simulation.shrink(failing.trace, configuration: configuration)
            let final = try await Simulation.replay(shrunk, configuration: configuration)
            try SimulationTrace(seed: first.seed, replicas: replicas, violations: final.violations, steps: shrunk)
                .write(to: traceOut)
            throw CLIError(
                message: "seed \(first.seed) violates: \(first.violations[0]); shrunk from \(failing.trace.count) to "
                    + "\(shrunk.count) steps in \(traceOut) (casemesh harness --replay \(traceOut))")
        }
    }

    private func play(_ path: String) async throws {
        let directory = NSTemporaryDirectory() + "casemesh-scenario-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let failures: [String]
        let name: String
        do {
            let loaded = try Scenario.load(path)
            name = loaded.name
            failures = try await ScenarioRunner().run(loaded, directory: directory)
        } catch {
            throw CLIError(message: "\(path): \(error)")
        }
        if output.json {
            emit(
                JSONValue.object([
                    "scenario": .string(name), "ok": .bool(failures.isEmpty),
                    "failures": .array(failures.map(JSONValue.string)),
                ]).text)
        } else {
            emit("\(failures.isEmpty ? "ok" : "FAILED"): \(name)")
            for failure in failures { emit("  \(failure)") }
        }
        if let first = failures.first { throw CLIError(message: "\(path): \(first)") }
    }

    private func replayTrace(_ path: String) async throws {
        let trace: SimulationTrace
        do {
            trace = try SimulationTrace.read(path)
        } catch {
            throw CLIError(message: "\(error)")
        }
        var configuration = SimulationConfiguration()
        configuration.replicas = trace.replicas
        configuration.seed = trace.seed
        let report = try await Simulation.replay(trace.steps, configuration: configuration)
        if output.json {
            emit(
                JSONValue.object([
                    "steps": .number(Int64(trace.steps.count)),
                    "violations": .array(report.violations.map(JSONValue.string)),
                ]).text)
        } else {
            emit("replayed \(trace.steps.count) steps: \(report.violations.count) violations")
            for violation in report.violations { emit("  \(violation)") }
        }
        if let first = report.violations.first { throw CLIError(message: "\(path): \(first)") }
    }

    /// `--processes`: runs of real nodes, one after another, each from its seed.
    private func runProcesses() async throws {
        var configuration = ProcessHarness.Configuration(
            binary: URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path)
        configuration.replicas = replicas
        configuration.steps = steps
        configuration.faults = try processFaults()
        let started = ContinuousClock.now
        var reports: [ProcessHarness.Report] = []
        for run in 0..<runs {
            if let minutes, (ContinuousClock.now - started).seconds > minutes * 60 { break }
            configuration.seed = seed &+ UInt64(run)
            let root = NSTemporaryDirectory() + "casemesh-harness-processes-\(UUID().uuidString)"
            let report: ProcessHarness.Report
            do {
                report = try await ProcessHarness(configuration: configuration, root: root).run()
            } catch {
                throw CLIError(message: "seed \(configuration.seed): the run failed: \(error) (files kept in \(root))")
            }
            if report.violations.isEmpty { try? FileManager.default.removeItem(atPath: root) }
            if !output.json {
                emit(
                    "seed \(report.seed): \(report.edits) edits acknowledged, \(report.refusedEdits) refused, "
                        + "\(report.kills) kill -9, \(report.stops) SIGSTOP, \(report.skews) faketime, "
                        + "\(report.revoked ? "a laptop revoked" : "no revocation"), converged in "
                        + "\(String(format: "%.1f", report.convergenceSeconds)) s"
                        + (report.violations.isEmpty
                            ? "" : ", \(report.violations.count) violations (files in \(root))"))
                for line in report.violations { emit("  violation: \(line)") }
                for line in Set(report.notes).sorted() { emit("  note: \(line)") }
            }
            reports.append(report)
        }
        let seconds = (ContinuousClock.now - started).seconds
        let failed = reports.filter { !$0.violations.isEmpty }
        func total(_ figure: (ProcessHarness.Report) -> Int) -> JSONValue {
            .number(Int64(reports.map(figure).reduce(0, +)))
        }
        if output.json {
            emit(
                JSONValue.object([
                    "runs": .number(Int64(reports.count)), "steps": total(\.steps), "edits": total(\.edits),
                    "refused_edits": total(\.refusedEdits), "kills": total(\.kills), "stops": total(\.stops),
                    "skews": total(\.skews), "revocations": total { $0.revoked ? 1 : 0 },
                    "slowest_convergence_seconds": .double(reports.map(\.convergenceSeconds).max() ?? 0),
                    "violations": .array(
                        failed.flatMap { report in
                            report.violations.map {
                                JSONValue.object(["seed": .number(Int64(report.seed)), "violation": .string($0)])
                            }
                        }),
                    "seconds": .double(seconds), "first_seed": .number(Int64(seed)),
                ]).text)
        } else {
            emit("\(reports.count) runs of real nodes, \(failed.count) with violations (\(Int(seconds)) s)")
        }
        if let first = failed.first {
            throw CLIError(message: "seed \(first.seed) violates: \(first.violations[0])")
        }
    }
}
