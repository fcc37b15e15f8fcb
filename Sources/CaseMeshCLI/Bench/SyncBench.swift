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

/// `casemesh bench sync`: node B, empty, pulls every change from node A (a separate
/// `casemesh serve` process) over mutual TLS on loopback, until durable; then an idle
/// sync between two nodes that hold the same 100,000 cases.
struct SyncBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Time a full pull of a large log over mutual TLS, and an idle sync (use a release build).",
        discussion: """
            Prints one JSON object: changes, ops, seconds, ops_per_s and changes_per_s of the pull; bytes_per_op on \
            the wire (protocol frames, before TLS); peak_rss_mb during the pull; apply_ops_per_s, the same changes \
            applied to a fresh store without the network in the same run, and the ratio; idle_sync_ms (the median \
            of five, all in idle_sync_ms_runs) and idle_sync_bytes between two nodes holding --idle-cases cases; \
            resume_after_kill: another empty node pulls the log, node A is killed with kill -9 half way and \
            restarted, and the pull resumes (restart and resume seconds, the resumed rate against the full pull's).
            """)

    @Option(help: "Changes in node A's log.") var changes = 1_000_000
    @Option(help: "Cases they belong to.") var cases = 10_000
    @Option(help: "Cases both nodes hold for the idle sync.") var idleCases = 100_000
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Flag(help: "Print JSON (always JSON; accepted for symmetry).") var json = false

    func validate() throws {
        guard changes >= cases, cases > 0, idleCases > 0 else {
            throw ValidationError("--changes must be at least --cases, and both positive")
        }
    }

    func run() async throws {
        let root = NSTemporaryDirectory() + "casemesh-bench-sync-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let authority = try EphemeralAuthority(directory: root + "/ca")
        let serverReplica = try ReplicaID("bench.server/node")
        let clientReplica = try ReplicaID("bench.client/node")
        let schema = CaseSchema.bundled
        let fields = try MergeWorkload.registerFields(schema, count: 12)

        // Node A's log, written in chunks so memory stays flat (not timed).
        let serverStore = try CLIError.wrap { try CaseStore.create(directory: root + "/a", replicaID: serverReplica) }
        var ops = 0
        try SyncWorkload(
            origin: serverReplica, cases: cases, changes: changes, fields: fields, seed: seed,
            participants: ["bench.server", "bench.client"]
        ).generate { chunk in
            ops += chunk.reduce(0) { $0 + $1.ops.count }
            _ = try CLIError.wrap { try serverStore.apply(chunk, batchSize: 50_000) }
        }
        let server = try ServeProcess(root: root, data: root + "/a", replica: serverReplica, authority: authority)
        defer { server.stop() }

        // Node B pulls everything.
        let clientStore = try CLIError.wrap { try CaseStore.create(directory: root + "/b", replicaID: clientReplica) }
        let client = try Self.makeNode(clientStore, authority: authority)
        Memory.resetPeak()
        let rssBefore = Memory.residentMegabytes()
        let started = ContinuousClock.now
        let outcome = await client.sync(with: server.peer)
        let seconds = (ContinuousClock.now - started).seconds
        let peak = Memory.peakMegabytes()
        if let error = outcome.error { throw CLIError(message: "the pull failed: \(error)") }
        let held = try CLIError.wrap { try clientStore.logEnd() } - 1
        guard held == UInt64(changes) else {
            throw CLIError(message: "node B holds \(held) changes, expected \(changes)")
        }
        let traffic = client.transport.traffic.totals

        // The same changes applied without the network, for the ratio.
        let referenceStore = try CLIError.wrap {
            try CaseStore.create(directory: root + "/c", replicaID: clientReplica)
        }
        var applySeconds = 0.0
        try SyncWorkload(
            origin: serverReplica, cases: cases, changes: changes, fields: fields, seed: seed,
            participants: ["bench.server", "bench.client"]
        ).generate { chunk in
            let encoded = chunk.map { ($0, $0.encoded()) }
            let chunkStart = ContinuousClock.now
            _ = try CLIError.wrap { try referenceStore.apply(encoded, batchSize: 4096) }
            applySeconds += (ContinuousClock.now - chunkStart).seconds
        }
        server.stop()

        let resume = try await resumedPull(
            root: root, data: root + "/a", replica: serverReplica, authority: authority, files: server.files)

        let idle = try await idleSync(root: root + "/idle", authority: authority, fields: fields)

        // The merge benchmark's apply, with its default workload, in this same run.
        let merge = try MergeBench.parse([])
        let mergeResult = try merge.runCaseMesh(
            try MergeWorkload(
                cases: merge.cases, fieldCount: merge.fields, updatesPerReplica: merge.updates,
                replicaCount: merge.replicas, seed: merge.seed, schema: schema),
            schema: schema)
        guard case .object(let mergeFields) = mergeResult, case .double(let mergeRate)? = mergeFields["ops_per_s"]
        else {
            throw CLIError(message: "the merge benchmark reported no rate")
        }
        let result: [String: JSONValue] = [
            "bench": .string("sync"), "changes": .number(Int64(changes)), "cases": .number(Int64(cases)),
            "ops": .number(Int64(ops)), "seconds": .double(seconds), "ops_per_s": .double(Double(ops) / seconds),
            "changes_per_s": .double(Double(changes) / seconds),
            "bytes_per_op": .double(Double(traffic.sent + traffic.received) / Double(ops)),
            "wire_bytes": .number(Int64(traffic.sent + traffic.received)),
            "rss_before_mb": .double(rssBefore), "peak_rss_mb": .double(peak),
            "apply_ops_per_s": .double(Double(ops) / applySeconds),
            "sync_over_apply": .double(applySeconds / seconds),
            "merge_ops_per_s": .double(mergeRate), "sync_over_merge": .double(Double(ops) / seconds / mergeRate),
            "idle_cases": .number(Int64(idleCases)), "idle_sync_ms": .double(idle.milliseconds),
            "idle_sync_ms_runs": .array(idle.runs.map { .double($0) }),
            "idle_sync_bytes": .number(Int64(idle.bytes)), "seed": .number(Int64(seed)),
            "resume_after_kill": .object([
                "changes_before_kill": .number(Int64(resume.before)),
                "changes_resumed": .number(Int64(changes) - Int64(resume.before)),
                "restart_seconds": .double(resume.restartSeconds), "resume_seconds": .double(resume.seconds),
                "changes_sent_back": .number(Int64(resume.sentBack)),
                "server_cpu_seconds": .double(resume.serverCPU),
                "resume_changes_per_s": .double(Double(changes - resume.before) / resume.seconds),
                "resume_rate_over_full_rate": .double(
                    Double(changes - resume.before) / resume.seconds / (Double(changes) / seconds)),
            ]),
        ]
        emit(JSONValue.object(result).text)
    }

    /// A second empty node pulls node A's log; node A is killed with kill -9 once half
    /// of it has arrived, restarted on its data, and the pull resumes to the end.
    ///
    /// - Returns: changes held before the kill, seconds to restart, seconds to resume,
    ///   how many changes the resuming node sent node A in that session, and the CPU
    ///   seconds node A used in it.
    private func resumedPull(
        root: String, data: String, replica: ReplicaID, authority: EphemeralAuthority,
        files: (certificate: String, key: String)
    ) async throws -> (before: Int, restartSeconds: Double, seconds: Double, sentBack: Int, serverCPU: Double) {
        let first = try ServeProcess(root: root, data: data, replica: replica, authority: authority, files: files)
        defer { first.kill9() }
        let store = try CLIError.wrap {
            try CaseStore.create(directory: root + "/d", replicaID: try ReplicaID("bench.client/laptop"))
        }
        let node = try Self.makeNode(store, authority: authority)
        // Bounded: the pull of the whole log took a while; half of it comes sooner.
        let half = UInt64(changes / 2)
        let process = first.process.processIdentifier
        let killer = Task { [store] in
            for _ in 0..<60_000 {
                if Task.isCancelled { return }
                if ((try? store.logEnd()) ?? 1) - 1 >= half { break }
                try? await Task.sleep(for: .milliseconds(10))
            }
            kill(process, SIGKILL)
        }
        _ = await node.sync(with: first.peer)
        killer.cancel()
        await killer.value
        first.kill9()
        let before = Int(try CLIError.wrap { try store.logEnd() } - 1)
        let restarted = ContinuousClock.now
        let second = try ServeProcess(root: root, data: data, replica: replica, authority: authority, files: files)
        defer { second.stop() }
        let restartSeconds = (ContinuousClock.now - restarted).seconds
        let started = ContinuousClock.now
        let serverBefore = second.cpuSeconds
        let outcome = await node.sync(with: second.peer)
        let resumeSeconds = (ContinuousClock.now - started).seconds
        let serverSeconds = second.cpuSeconds - serverBefore
        if let error = outcome.error { throw CLIError(message: "the resumed pull failed: \(error)") }
        let held = try CLIError.wrap { try store.logEnd() } - 1
        guard held == UInt64(changes) else {
            throw CLIError(message: "after the resumed pull the node holds \(held) changes, expected \(changes)")
        }
        return (before, restartSeconds, resumeSeconds, outcome.summary.changesSent, serverSeconds)
    }

    /// A node on `store` with a certificate from the benchmark's CA (no listener).
    static func makeNode(_ store: CaseStore, authority: EphemeralAuthority) throws -> Node {
        let files = try authority.issue(store.replicaID)
        var configuration = NodeConfiguration()
        configuration.certificate = files.certificate
        configuration.key = files.key
        configuration.authority = authority.certificatePath
        var logger = Logger(label: "casemesh.bench")
        logger.logLevel = .error
        return try Node(
            configuration: configuration, store: store, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
    }

    /// Two nodes that hold the same `idleCases` cases; the syncs after the first two
    /// are timed, five of them (the median is the figure: one sync is a few
    /// milliseconds, at the mercy of the scheduler on a shared machine).
    private func idleSync(
        root: String, authority: EphemeralAuthority, fields: [FieldKey]
    ) async throws -> (milliseconds: Double, runs: [Double], bytes: Int) {
        let serverReplica = try ReplicaID("bench.idle-server/node")
        let clientReplica = try ReplicaID("bench.idle-client/node")
        let serverStore = try CLIError.wrap { try CaseStore.create(directory: root + "/a", replicaID: serverReplica) }
        try SyncWorkload(
            origin: serverReplica, cases: idleCases, changes: idleCases, fields: Array(fields.prefix(1)), seed: seed,
            participants: ["bench.idle-server", "bench.idle-client"]
        ).generate { chunk in _ = try CLIError.wrap { try serverStore.apply(chunk, batchSize: 50_000) } }
        let server = try ServeProcess(root: root, data: root + "/a", replica: serverReplica, authority: authority)
        defer { server.stop() }
        let clientStore = try CLIError.wrap { try CaseStore.create(directory: root + "/b", replicaID: clientReplica) }
        let client = try Self.makeNode(clientStore, authority: authority)
        // The first sync moves everything; the second carries the echo of what B relayed back.
        for _ in 0..<2 {
            if let error = await client.sync(with: server.peer).error {
                throw CLIError(message: "idle setup: \(error)")
            }
        }
        var runs: [Double] = []
        var bytes = 0
        for _ in 0..<5 {
            let before = client.transport.traffic.totals
            let started = ContinuousClock.now
            let outcome = await client.sync(with: server.peer)
            runs.append((ContinuousClock.now - started).seconds * 1000)
            if let error = outcome.error { throw CLIError(message: "idle sync: \(error)") }
            let after = client.transport.traffic.totals
            bytes = max(bytes, after.sent - before.sent + after.received - before.received)
        }
        return (runs.sorted()[runs.count / 2], runs, bytes)
    }
}

/// The sync benchmark's log: one origin, `cases` cases opened with their
/// participants and `fields` set to "init", then random 24-byte writes to random
/// (case, field) pairs until `changes` changes.
struct SyncWorkload {
    let origin: ReplicaID
    let cases: Int
    let changes: Int
    let fields: [FieldKey]
    let seed: UInt64
    let participants: [String]

    func generate(chunk size: Int = 50_000, _ body: ([Change]) throws -> Void) throws {
        var generator = SeededGenerator(seed: seed)
        let caseIDs = (0..<cases).map { _ in CaseID.random(using: &generator) }
        var sequences = [UInt64](repeating: 0, count: cases)
        var clock = HybridLogicalClock()
        var wall: UInt64 = SystemWallClock().nowMillis() - UInt64(changes)
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        var chunk: [Change] = []
        chunk.reserveCapacity(size)
        for index in 0..<changes {
            wall += 1
            let caseIndex = index < cases ? index : Int.random(in: 0..<cases, using: &generator)
            sequences[caseIndex] += 1
            let seq = sequences[caseIndex]
            var ops: [FieldOperation]
            if seq == 1 {
                // The first participant leads the case; the others receive it under a consent.
                ops = [
                    .assign(Entitlement.lead, .string(participants[0])),
                    .insert(Entitlement.participants, participants[0]),
                ]
                ops += ConsentGrant(
                    recipients: try participants.dropFirst().map { try InstitutionID($0) },
                    categories: DataCategory.allCases
                ).ops()
                ops += fields.map { .assign($0, .string("init")) }
            } else {
                let value = String(
                    decoding: (0..<24).map { _ in alphabet.randomElement(using: &generator)! }, as: UTF8.self)
                ops = [.assign(fields.randomElement(using: &generator)!, .string(value))]
            }
            chunk.append(
                Change(
                    caseID: caseIDs[caseIndex], origin: origin, seq: seq, hlc: clock.tick(wallMillis: wall),
                    context: VersionVector([origin: seq - 1]), ops: ops))
            if chunk.count == size {
                try body(chunk)
                chunk.removeAll(keepingCapacity: true)
            }
        }
        if !chunk.isEmpty { try body(chunk) }
    }
}

/// A `casemesh serve` child process (this same executable) for the benchmarks.
final class ServeProcess {
    let process = Process()
    let peer: NodeConfiguration.Peer
    /// The HTTP API's port, when started with `extra` holding `--http`.
    private(set) var httpPort: Int?

    /// The certificate and key it runs with (a restart keeps them: its seals verify).
    let files: (certificate: String, key: String)

    init(
        root: String, data: String, replica: ReplicaID, authority: EphemeralAuthority, extra: [String] = [],
        files: (certificate: String, key: String)? = nil
    ) throws {
        let files = try files ?? authority.issue(replica)
        self.files = files
        let executable =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments =
            [
                "serve", "--data", data, "--listen", "127.0.0.1:0", "--cert", files.certificate, "--key", files.key,
                "--ca",
                authority.certificatePath, "--log-level", "error",
            ] + extra
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        func readLine() -> [String: Any]? {
            var line = Data()
            while true {
                let byte = output.fileHandleForReading.readData(ofLength: 1)
                if byte.isEmpty || byte == Data("\n".utf8) { break }
                line.append(byte)
            }
            return try? JSONSerialization.jsonObject(with: line) as? [String: Any]
        }
        var syncPort: Int?
        for _ in 0..<(extra.contains("--http") ? 2 : 1) {
            guard let announced = readLine() else { break }
            if announced["event"] as? String == "http-listening" {
                httpPort = announced["port"] as? Int
            } else {
                syncPort = announced["port"] as? Int
            }
        }
        guard let port = syncPort else {
            process.terminate()
            throw CLIError(message: "the benchmark's server did not start")
        }
        peer = NodeConfiguration.Peer(replica: replica, host: "127.0.0.1", port: port)
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// CPU seconds the process has used so far (user and system, from /proc).
    var cpuSeconds: Double {
        guard
            let text = try? String(
                contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return 0 }
        // Fields after the command name: state is field 3; utime and stime are 14 and 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// kill -9, as a crash or a power cut would end it.
    func kill9() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Resident memory of this process, from /proc (Linux).
enum Memory {
    /// Resets the kernel's peak-RSS mark (VmHWM) for this process.
    static func resetPeak() {
        try? Data("5".utf8).write(to: URL(fileURLWithPath: "/proc/self/clear_refs"))
    }

    static func residentMegabytes() -> Double { field("VmRSS:") }

    static func peakMegabytes() -> Double { field("VmHWM:") }

    private static func field(_ name: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
            let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes / 1024
    }
}
