import ArgumentParser
import CaseMeshCRDT
import CaseMeshModel
import CaseMeshOperations
@_spi(Testing) import CaseMeshStore
import Foundation

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure CaseMesh's hot paths (use a release build).",
        subcommands: [MergeBench.self, SyncBench.self, APIBench.self, SeedCases.self])
}

/// `casemesh bench merge`: replica 0 applies the other replicas' changes into its
/// on-disk store; `--floor` times raw sqlite3 doing the least any durable store must.
struct MergeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Time applying remote changes to an on-disk replica (or the raw sqlite3 floor).",
        discussion: """
            Three replicas start from the same C cases × F register fields ("init"); each makes U \
            updates (24-byte values) as its own changes; replica 0 applies the others' 2·U changes. \
            Prints one JSON object: merged_ops, seconds, ops_per_s, bytes_per_op and the parameters.
            """)

    @Option(help: "Cases.") var cases = 10_000
    @Option(help: "Register fields per case.") var fields = 12
    @Option(help: "Updates made by each replica.") var updates = 100_000
    @Option(help: "Replicas (replica 0 applies the others' changes).") var replicas = 3
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Option(help: "Changes per transaction.") var batch = 10_000
    @Flag(help: "Time the raw sqlite3 floor instead of CaseMesh.") var floor = false
    @Flag(help: "Run both, CaseMesh then the floor, and print their ratio too.") var compare = false
    @Flag(help: "Print JSON (always JSON; accepted for symmetry).") var json = false

    func validate() throws {
        guard cases > 0, fields > 0, updates > 0, replicas >= 2, batch > 0 else {
            throw ValidationError("--cases, --fields, --updates and --batch must be positive, --replicas at least 2")
        }
    }

    func run() throws {
        let schema = CaseSchema.bundled
        let workload = try MergeWorkload(
            cases: cases, fieldCount: fields, updatesPerReplica: updates, replicaCount: replicas, seed: seed,
            schema: schema)
        var results: [JSONValue] = []
        if !floor || compare { results.append(try runCaseMesh(workload, schema: schema)) }
        if floor || compare { results.append(try runFloor(workload)) }
        for result in results { emit(result.text) }
        if compare, case .object(let mesh) = results[0], case .object(let raw) = results[1],
            case .double(let meshRate)? = mesh["ops_per_s"], case .double(let rawRate)? = raw["ops_per_s"]
        {
            emit(
                JSONValue.object([
                    "bench": .string("merge"), "mode": .string("ratio"),
                    "casemesh_over_floor": .double(meshRate / rawRate),
                ]).text)
        }
    }

    private func parameters(_ mode: String) -> [String: JSONValue] {
        [
            "bench": .string("merge"), "mode": .string(mode), "cases": .number(Int64(cases)),
            "fields": .number(Int64(fields)), "updates": .number(Int64(updates)), "replicas": .number(Int64(replicas)),
            "seed": .number(Int64(seed)), "batch": .number(Int64(batch)),
        ]
    }

    private func temporaryDirectory(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "casemesh-bench-\(name)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func runCaseMesh(_ workload: MergeWorkload, schema: CaseSchema) throws -> JSONValue {
        let directory = try temporaryDirectory("casemesh")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try CLIError.wrap {
            try CaseStore.create(
                directory: directory, replicaID: workload.replicas[0], schema: schema,
                clock: FixedWallClock(millis: workload.endMillis))
        }
        // Untimed setup: the shared starting cases and replica 0's own updates.
        _ = try CLIError.wrap { try store.apply(workload.seedChanges, batchSize: batch) }
        _ = try CLIError.wrap { try store.apply(workload.updates[0].map(\.change), batchSize: batch) }
        let remote = workload.updates.dropFirst().flatMap { $0 }.map { ($0.change, $0.change.encoded()) }
        let bytes = remote.reduce(0) { $0 + $1.1.count }
        let start = ContinuousClock.now
        let report = try CLIError.wrap { try store.apply(remote, batchSize: batch) }
        let seconds = (ContinuousClock.now - start).seconds
        guard report.applied == remote.count, report.rejected.isEmpty else {
            throw CLIError(
                message: "benchmark apply went wrong: \(report.applied) applied, \(report.rejected.count) refused")
        }
        var result = parameters("casemesh")
        result["merged_ops"] = .number(Int64(report.appliedOperations))
        result["seconds"] = .double(seconds)
        result["ops_per_s"] = .double(Double(report.appliedOperations) / seconds)
        result["bytes_per_op"] = .double(Double(bytes) / Double(report.appliedOperations))
        result["open_conflicts"] = .number(Int64(try CLIError.wrap { try store.openConflicts().count }))
        return .object(result)
    }

    private func runFloor(_ workload: MergeWorkload) throws -> JSONValue {
        let directory = try temporaryDirectory("floor")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let floorStore = try FloorStore(path: directory + "/floor.sqlite")
        try floorStore.seed(
            cases: workload.caseIDs.count, fields: workload.fields.count, hlc: MergeWorkload.startMillis)
        try floorStore.apply(workload.updates[0], replica: 0, batch: batch)
        var merged = 0
        let start = ContinuousClock.now
        for (index, updates) in workload.updates.enumerated().dropFirst() {
            try floorStore.apply(updates, replica: index, batch: batch)
            merged += updates.count
        }
        let seconds = (ContinuousClock.now - start).seconds
        var result = parameters("floor")
        result["merged_ops"] = .number(Int64(merged))
        result["seconds"] = .double(seconds)
        result["ops_per_s"] = .double(Double(merged) / seconds)
        result["bytes_per_op"] = .double(Double(8 + 8 + 8 + 8 + 24))
        return .object(result)
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
