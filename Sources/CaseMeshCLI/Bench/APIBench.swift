import ArgumentParser
import CaseMeshCRDT
import CaseMeshModel
import CaseMeshNet
import CaseMeshNode
import CaseMeshOperations
@_spi(Testing) import CaseMeshStore
import Foundation
import Logging
import NIOPosix
import Synchronization

/// `casemesh bench api`: the HTTP API under load while a peer pulls from the same node.
struct APIBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "Time the HTTP API under concurrent clients while a peer pulls a sync from the same node.",
        discussion: """
            Node A (a separate serve --http process) holds --cases cases and --changes changes. First a peer pulls \
            the whole log with no API load (sync_alone_ops_per_s); then --clients concurrent clients run a mix of \
            90% reads (a case, or a page of the case list) and 10% single-field writes while another fresh peer \
            pulls the same log (sync_under_load_ops_per_s, and the ratio). Prints one JSON object with \
            requests_per_s, p50_ms and p99_ms overall and per kind. Use a release build.
            """)

    @Option(help: "Concurrent API clients.") var clients = 32
    @Option(help: "Cases on node A.") var cases = 10_000
    @Option(help: "Changes in node A's log.") var changes = 200_000
    @Option(help: "Seconds of API load at least (it also lasts as long as the pull).") var seconds = 10.0
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Flag(help: "Print JSON (always JSON; accepted for symmetry).") var json = false

    func validate() throws {
        guard clients >= 1, clients <= 256, changes >= cases, cases > 0, seconds > 0 else {
            throw ValidationError("--clients 1-256, --changes at least --cases, --seconds positive")
        }
    }

    func run() async throws {
        let root = NSTemporaryDirectory() + "casemesh-bench-api-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try EphemeralAuthority(directory: root + "/ca")
        let serverReplica = try ReplicaID("bench.server/node")
        let fields = try MergeWorkload.registerFields(CaseSchema.bundled, count: 12)
        let store = try CLIError.wrap { try CaseStore.create(directory: root + "/a", replicaID: serverReplica) }
        var ops = 0
        try SyncWorkload(
            origin: serverReplica, cases: cases, changes: changes, fields: fields, seed: seed,
            participants: ["bench.server", "bench.client"]
        ).generate { chunk in
            ops += chunk.reduce(0) { $0 + $1.ops.count }
            _ = try CLIError.wrap { try store.apply(chunk, batchSize: 50_000) }
        }
        let password = "bench-password-\(seed)"
        try CLIError.wrap {
            try store.addStaff(username: "bench", displayName: "bench", role: .admin, password: password)
        }
        let caseIDs = try CLIError.wrap { try store.caseSummaries() }.map(\.caseID.rawValue)
        let server = try ServeProcess(
            root: root, data: root + "/a", replica: serverReplica, authority: authority,
            extra: ["--http", "127.0.0.1:0", "--http-max-requests", "1024"])
        defer { server.stop() }
        guard let httpPort = server.httpPort else { throw CLIError(message: "the node's HTTP API did not start") }
        let token = try await Self.login(port: httpPort, password: password)

        // The sync alone.
        let alone = try await pull(into: root + "/b", from: server, authority: authority)
        // The sync again, into a fresh store, under API load.
        let stop = StopFlag()
        let started = ContinuousClock.now
        async let load = Self.load(
            port: httpPort, token: token, caseIDs: caseIDs, clients: clients, seed: seed, stop: stop)
        let underLoad = try await pull(into: root + "/c", from: server, authority: authority)
        let remaining = seconds - (ContinuousClock.now - started).seconds
        if remaining > 0 { try await Task.sleep(for: .seconds(remaining)) }
        stop.set()
        let samples = try await load
        let loadSeconds = (ContinuousClock.now - started).seconds

        func percentile(_ values: [Double], _ fraction: Double) -> Double {
            guard !values.isEmpty else { return 0 }
            let sorted = values.sorted()
            return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
        }
        var kinds: [String: JSONValue] = [:]
        for kind in ["read", "list", "write"] {
            let values = samples.filter { $0.kind == kind }.map(\.milliseconds)
            kinds[kind] = .object([
                "requests": .number(Int64(values.count)), "p50_ms": .double(percentile(values, 0.5)),
                "p99_ms": .double(percentile(values, 0.99)),
            ])
        }
        let all = samples.filter { $0.kind != "error" }.map(\.milliseconds)
        let reads = samples.filter { $0.kind == "read" || $0.kind == "list" }.map(\.milliseconds)
        let failures = samples.filter { !$0.ok }.count
        let result: [String: JSONValue] = [
            "bench": .string("api"), "clients": .number(Int64(clients)), "cases": .number(Int64(cases)),
            "changes": .number(Int64(changes)), "requests": .number(Int64(samples.count)),
            "failed_requests": .number(Int64(failures)), "load_seconds": .double(loadSeconds),
            "requests_per_s": .double(Double(samples.count) / loadSeconds),
            "p50_ms": .double(percentile(all, 0.5)), "p99_ms": .double(percentile(all, 0.99)),
            "read_p99_ms": .double(percentile(reads, 0.99)), "by_kind": .object(kinds),
            "sync_alone_ops_per_s": .double(Double(ops) / alone),
            "sync_under_load_ops_per_s": .double(Double(ops) / underLoad),
            "sync_under_load_over_alone": .double(alone / underLoad), "seed": .number(Int64(seed)),
        ]
        emit(JSONValue.object(result).text)
    }

    /// One peer's full pull of node A into a new store, by a separate `casemesh sync`
    /// process (as a real peer is: it must not share this process's threads with
    /// the API clients); its seconds.
    private func pull(into directory: String, from server: ServeProcess, authority: EphemeralAuthority)
        async throws -> Double
    {
        let replica = try ReplicaID("bench.client/node-\(UUID().uuidString.prefix(8).lowercased())")
        _ = try CLIError.wrap { try CaseStore.create(directory: directory, replicaID: replica) }
        let files = try authority.issue(replica)
        let executable =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "sync", "--json", "--data", directory, "--cert", files.certificate, "--key", files.key, "--ca",
            authority.certificatePath, "--peer", "\(server.peer.replica)=\(server.peer.host):\(server.peer.port)",
            "--log-level", "error",
        ]
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        let started = ContinuousClock.now
        try process.run()
        // Polled, not waited for: a blocking wait would hold one of the few threads
        // the API clients run on. (At log level error its standard error stays small.)
        while process.isRunning { try await Task.sleep(for: .milliseconds(5)) }
        let seconds = (ContinuousClock.now - started).seconds
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        guard process.terminationStatus == 0 else {
            throw CLIError(message: "the pull failed: \(String(decoding: message, as: UTF8.self).prefix(300))")
        }
        let store = try CLIError.wrap { try CaseStore.open(directory: directory) }
        let held = try CLIError.wrap { try store.logEnd() } - 1
        // Under load the log grows (writes, and the access entries of reads) while it is pulled.
        guard held >= UInt64(changes) else {
            throw CLIError(message: "the peer holds \(held) changes, expected at least \(changes)")
        }
        return seconds
    }

    static func login(port: Int, password: String) async throws -> String {
        let answer = try await BenchHTTP.withConnection(host: "127.0.0.1", port: port) { exchange in
            try await exchange.request(
                .POST, "/api/v1/session", headers: [("Content-Type", "application/json")],
                body: Array(#"{"username": "bench", "password": "\#(password)"}"#.utf8))
        }
        guard answer.status == 201,
            let object = try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any],
            let token = object["token"] as? String
        else { throw CLIError(message: "the benchmark could not log in (HTTP \(answer.status))") }
        return token
    }

    struct Sample: Sendable {
        var kind: String
        var milliseconds: Double
        var ok: Bool
    }

    /// `clients` loops of requests until `stop`: 60% reads of a random case, 30%
    /// pages of the case list, 10% single-field writes.
    static func load(
        port: Int, token: String, caseIDs: [String], clients: Int, seed: UInt64, stop flag: StopFlag
    ) async throws -> [Sample] {
        try await withThrowingTaskGroup(of: [Sample].self) { group in
            for client in 0..<clients {
                group.addTask {
                    var generator = SeededGenerator(seed: seed &+ UInt64(client) &* 7919)
                    var samples: [Sample] = []
                    let authorization = ("Authorization", "Bearer \(token)")
                    // A connection that fails is replaced; its request counts as failed.
                    while !flag.isSet {
                        do {
                            try await BenchHTTP.withConnection(host: "127.0.0.1", port: port) { exchange in
                                while !flag.isSet {
                                    let roll = Int.random(in: 0..<10, using: &generator)
                                    let caseID = caseIDs[Int.random(in: 0..<caseIDs.count, using: &generator)]
                                    let started = ContinuousClock.now
                                    let kind: String
                                    let status: Int
                                    if roll < 6 {
                                        kind = "read"
                                        status = try await exchange.request(
                                            .GET, "/api/v1/cases/" + caseID, headers: [authorization]
                                        ).status
                                    } else if roll < 9 {
                                        kind = "list"
                                        let offset = Int.random(
                                            in: 0..<max(1, caseIDs.count - 50), using: &generator)
                                        status = try await exchange.request(
                                            .GET, "/api/v1/cases?limit=50&offset=\(offset)", headers: [authorization]
                                        ).status
                                    } else {
                                        kind = "write"
                                        let value = ["low", "medium", "high", "crisis"][
                                            Int.random(in: 0..<4, using: &generator)]
                                        status = try await exchange.request(
                                            .POST, "/api/v1/cases/\(caseID)/changes",
                                            headers: [authorization, ("Content-Type", "application/json")],
                                            body: Array(
                                                #"{"operations": [{"op": "assign", "field": "riskLevel", "value": "\#(value)"}]}"#
                                                    .utf8)
                                        ).status
                                    }
                                    let milliseconds = (ContinuousClock.now - started).seconds * 1000
                                    samples.append(Sample(kind: kind, milliseconds: milliseconds, ok: status < 300))
                                }
                            }
                        } catch {
                            samples.append(Sample(kind: "error", milliseconds: 0, ok: false))
                            try await Task.sleep(for: .milliseconds(50))
                        }
                    }
                    return samples
                }
            }
            var all: [Sample] = []
            for try await samples in group { all += samples }
            return all
        }
    }
}

/// A flag the load's tasks poll.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set() { value.store(true, ordering: .relaxed) }
}
