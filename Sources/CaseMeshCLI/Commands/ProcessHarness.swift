import CaseMeshCRDT
import CaseMeshNet
import CaseMeshStore
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `casemesh harness --processes`: the harness's properties checked from outside, on
/// real `casemesh serve` processes over real mutual TLS on loopback.
///
/// Each run starts one node per institution (certificates from the run's own CA),
/// lets them sync every second while case workers' edits go in through the command
/// line beside the running nodes, and injects the run's faults: kill -9 and restart,
/// SIGSTOP and SIGCONT, a node whose clock is wrong (its case workers' edits run under
/// libfaketime, hours slow or minutes fast) and is later fixed, and a laptop's
/// certificate revoked while it keeps writing. Then every fault is healed
/// and the nodes are given time to converge; the run checks what a user would:
/// every participant's `case show --json` identical, every acknowledged note on
/// every participant, none of the revoked laptop's later notes anywhere else,
/// nothing left pending or quarantined without a permanent cause, and every store
/// passing `casemesh check`.
///
/// Network namespaces and `tc netem` are not used: loopback only, so it runs on any
/// CI machine without privileges.
struct ProcessHarness {
    enum Fault: String, CaseIterable, Sendable {
        /// kill -9 a node, restart it a few steps later.
        case kill
        /// SIGSTOP a node, SIGCONT it a few steps later.
        case stop
        /// A node's clock set wrong (its edits stamped under libfaketime), later fixed.
        case skew
        /// Revoke the laptop's certificate while it keeps writing.
        case revoke
    }

    struct Configuration {
        var replicas = 3
        var steps = 40
        var seed: UInt64 = 1
        var faults = Set(Fault.allCases)
        /// The `casemesh` executable the nodes and edits run.
        var binary: String
        /// Seconds the nodes get to converge after the faults are healed.
        var settleSeconds = 90.0
    }

    struct Report {
        var seed: UInt64
        var steps = 0
        var edits = 0
        var refusedEdits = 0
        var kills = 0
        var stops = 0
        var skews = 0
        var revoked = false
        var convergenceSeconds = 0.0
        var violations: [String] = []
        var notes: [String] = []
    }

    let configuration: Configuration
    let root: String

    /// One institution's node: its data directory, port and certificate, and the
    /// `serve` process while it runs.
    final class Node {
        let index: Int
        let replica: ReplicaID
        let data: String
        let port: Int
        let certificate: String
        let key: String
        var process: ChildProcess?
        var stopped = false
        /// The libfaketime offset its case workers' edits run with, if any.
        var skew: String?
        var restartAt: Int?
        var resumeAt: Int?

        init(index: Int, replica: ReplicaID, data: String, port: Int, certificate: String, key: String) {
            self.index = index
            self.replica = replica
            self.data = data
            self.port = port
            self.certificate = certificate
            self.key = key
        }

        var running: Bool { process?.isRunning == true }
    }

    /// What a command line run printed, and how it ended.
    struct Ran {
        var status: Int32
        var output: String
        var errors: String
        var timedOut: Bool
    }

    /// The `faketime` wrapper (libfaketime). Preloading the library by hand leaves a
    /// Swift program without its arguments (it then prints its help and exits 0, an
    /// edit that never happened), so commands run through the wrapper. `serve` never
    /// runs under it: libdispatch's wall-clock timers spin under a faked clock.
    static let faketime = "/usr/bin/faketime"

    func run() async throws -> Report {
        var report = Report(seed: configuration.seed)
        var generator = SeededGenerator(seed: configuration.seed)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let authority = try EphemeralAuthority(directory: root + "/ca")
        var faults = configuration.faults
        if faults.contains(.skew) && !FileManager.default.isExecutableFile(atPath: Self.faketime) {
            faults.remove(.skew)
            report.notes.append("libfaketime is not installed (apt install faketime): no clock skew in this run")
        }
        let revoking = faults.contains(.revoke) && configuration.replicas >= 3
        var nodes: [Node] = []
        for index in 0..<configuration.replicas {
            let replica = try ReplicaID("inst\(index).centre/node")
            let files = try authority.issue(replica)
            let node = Node(
                index: index, replica: replica, data: root + "/r\(index)", port: try Self.freePort(),
                certificate: files.certificate, key: files.key)
            let ran = try await command(["init", "--replica", replica.rawValue, "--data", node.data], node: nil)
            guard ran.status == 0 else { throw CLIError(message: "casemesh init failed: \(ran.errors)") }
            nodes.append(node)
        }
        defer { for node in nodes { Self.end(node) } }
        for node in nodes { try await start(node, among: nodes, authority: authority) }

        // The laptop (the last node, when revocation is among the faults) takes part
        // only in its own case with two offices: after its revocation the nodes may
        // differ for good on what it wrote before (the threat model), so the shared
        // cases stay among the others.
        let laptop = revoking ? nodes.last : nil
        let offices = nodes.filter { $0 !== laptop }
        var cases: [(id: String, participants: [Node])] = []
        for opener in offices.prefix(2) {
            cases.append((try await open(on: opener, with: offices.filter { $0 !== opener }), offices))
        }
        if let laptop {
            cases.append((try await open(on: laptop, with: Array(offices.prefix(2))), [laptop] + offices.prefix(2)))
        }
        /// Notes acknowledged (the command exited 0), by case: the text, and whether
        /// every other participant must end up holding it.
        var acknowledged: [String: [(text: String, everywhere: Bool, writer: Node)]] = [:]
        var revokedAtStep: Int?
        /// The laptop's notes written after its revocation: no other node may hold them.
        var late: Set<String> = []
        let revokeStep =
            revoking ? Int.random(in: configuration.steps / 4...configuration.steps / 2, using: &generator) : -1

        for step in 0..<configuration.steps {
            report.steps += 1
            // Faults whose time is up are healed first.
            for node in nodes {
                if node.restartAt == step {
                    node.restartAt = nil
                    try await start(node, among: nodes, authority: authority)
                }
                if node.resumeAt == step {
                    node.resumeAt = nil
                    resume(node)
                }
            }
            if step == revokeStep, let laptop {
                try authority.revoke(certificateAt: laptop.certificate)
                revokedAtStep = step
                report.revoked = true
            }
            let roll = Int.random(in: 0..<100, using: &generator)
            let calm = nodes.filter { $0.running && !$0.stopped && $0.skew == nil }
            switch roll {
            case 0..<8 where faults.contains(.kill) && calm.count > 1:
                let node = calm.randomElement(using: &generator)!
                Self.end(node)
                node.restartAt = step + Int.random(in: 1...4, using: &generator)
                report.kills += 1
            case 8..<15 where faults.contains(.stop) && calm.count > 1:
                let node = calm.randomElement(using: &generator)!
                if let pid = node.process?.processIdentifier { kill(pid, SIGSTOP) }
                node.stopped = true
                node.resumeAt = step + Int.random(in: 1...3, using: &generator)
                report.stops += 1
            case 15..<19 where faults.contains(.skew) && calm.count > 1 && !nodes.contains(where: { $0.skew != nil }):
                let node = calm.randomElement(using: &generator)!
                // A clock hours slow, or minutes fast (within the drift peers accept).
                node.skew = Bool.random(using: &generator) ? "-3h" : "+5m"
                report.skews += 1
            case 19..<24 where nodes.contains(where: { $0.skew != nil }):
                // The operator fixes the clock.
                for node in nodes { node.skew = nil }
            case 24..<40:
                // Concurrent register writes: conflicts every node must show alike.
                let (caseID, participants) = cases.randomElement(using: &generator)!
                let writer = participants.randomElement(using: &generator)!
                let value = ["low", "medium", "high", "crisis"].randomElement(using: &generator)!
                let ran = try await command(
                    ["case", "set", caseID, "riskLevel", value, "--data", writer.data, "--actor", "harness", "--json"],
                    node: writer)
                record(ran, "case set on \(writer.replica)", &report)
            default:
                let (caseID, participants) = cases.randomElement(using: &generator)!
                let writer = participants.randomElement(using: &generator)!
                let text = "seed \(configuration.seed) step \(step) by \(writer.index)"
                let ran = try await command(
                    ["case", "note", caseID, text, "--data", writer.data, "--actor", "harness", "--json"],
                    node: writer)
                if record(ran, "case note on \(writer.replica)", &report) {
                    // Only the laptop's notes from before its revocation may travel,
                    // and even those need not reach every node (see above).
                    let everywhere = writer !== laptop
                    acknowledged[caseID, default: []].append((text, everywhere, writer))
                    if writer === laptop, revokedAtStep != nil { late.insert(text) }
                }
            }
            // Edits race the nodes' sync rounds.
            try await Task.sleep(for: .milliseconds(Int.random(in: 50...400, using: &generator)))
        }

        // Heal: every node running, on time, not stopped.
        for node in nodes {
            if node.stopped { resume(node) }
            node.skew = nil
            if !node.running { try await start(node, among: nodes, authority: authority) }
        }
        let healed = ContinuousClock.now
        var problems: [String] = []
        let deadline = healed.advanced(by: .seconds(configuration.settleSeconds))
        repeat {
            problems = try await differences(cases: cases, acknowledged: acknowledged, late: late, laptop: laptop)
            if problems.isEmpty { break }
            try await Task.sleep(for: .seconds(1))
        } while ContinuousClock.now < deadline
        report.convergenceSeconds = (ContinuousClock.now - healed).seconds
        report.violations += problems.map { "after \(Int(configuration.settleSeconds)) s: \($0)" }
        if problems.isEmpty {
            report.violations += try await stuck(offices, cases: cases, laptop: laptop)
        }
        for node in nodes { Self.end(node, gracefully: true) }
        for node in nodes {
            let ran = try await command(["check", "--data", node.data], node: nil)
            if ran.status != 0 {
                report.violations.append("casemesh check on \(node.replica): \(ran.output) \(ran.errors)")
            }
        }
        return report
    }

    init(configuration: Configuration, root: String) {
        self.configuration = configuration
        self.root = root
    }

    /// Whether an edit was acknowledged; a refusal is counted, a hang is a violation.
    @discardableResult
    private func record(_ ran: Ran, _ what: String, _ report: inout Report) -> Bool {
        if ran.timedOut {
            report.violations.append("\(what) did not finish within 60 s")
            return false
        }
        // Acknowledged: it exited 0 and named the change it wrote.
        if ran.status == 0 && ran.output.contains("\"change\"") {
            report.edits += 1
            return true
        }
        report.refusedEdits += 1
        report.notes.append("\(what) refused: \(ran.errors.trimmingCharacters(in: .whitespacesAndNewlines))")
        return false
    }

    private func open(on opener: Node, with others: [Node]) async throws -> String {
        let opened = try await command(
            ["case", "open", "--data", opener.data, "--field", "title=harness", "--field", "riskLevel=high"],
            node: opener)
        let caseID = opened.output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard opened.status == 0, !caseID.isEmpty else {
            throw CLIError(message: "case open on \(opener.replica) failed: \(opened.errors)")
        }
        let shared = try await command(
            ["case", "share", caseID] + others.map(\.replica.institution.rawValue) + ["--data", opener.data]
                + others.flatMap { ["--allow-new-institution", $0.replica.institution.rawValue] },
            node: opener)
        guard shared.status == 0 else { throw CLIError(message: "case share failed: \(shared.errors)") }
        return caseID
    }

    /// What still differs: participants that show a case differently, acknowledged
    /// notes missing somewhere, a revoked laptop's later note accepted somewhere.
    private func differences(
        cases: [(id: String, participants: [Node])],
        acknowledged: [String: [(text: String, everywhere: Bool, writer: Node)]], late: Set<String>, laptop: Node?
    ) async throws -> [String] {
        var problems: [String] = []
        for (caseID, participants) in cases {
            var shown: [(Node, String)] = []
            for node in participants where node !== laptop {
                let ran = try await command(["case", "show", caseID, "--json", "--data", node.data], node: nil)
                shown.append((node, ran.status == 0 ? ran.output : ""))
            }
            let laptops = participants.contains { $0 === laptop }
            for note in acknowledged[caseID] ?? [] where note.everywhere {
                for (node, text) in shown where !text.contains(note.text) {
                    // In the laptop's case, an office's note that depends on a change of
                    // the laptop's this node refused waits for good (the threat model's
                    // cost of a revocation); it must wait, not vanish, and its writer
                    // always shows it.
                    if laptops, node !== note.writer, pendingCount(node, caseID) > 0 { continue }
                    problems.append("\(caseID): \(node.replica) lacks the acknowledged note '\(note.text)'")
                }
            }
            for note in late {
                for (node, text) in shown where text.contains(note) {
                    problems.append("\(caseID): \(node.replica) accepted the revoked laptop's note '\(note)'")
                }
            }
            // The laptop's case may differ for good on what it wrote before its
            // revocation; every other case shows the same on every participant.
            if !laptops, let first = shown.first {
                for (node, text) in shown.dropFirst() where text != first.1 {
                    problems.append("\(caseID): \(node.replica) shows it differently from \(first.0.replica)")
                }
            }
        }
        return problems
    }

    /// The changes of a case waiting for others on a node (read from its store, beside
    /// its running `serve`, as the command line does); -1 when it cannot be read.
    private func pendingCount(_ node: Node, _ caseID: String) -> Int {
        guard let id = try? CaseID(caseID), let store = try? CaseStore.open(directory: node.data),
            let dots = try? store.pendingDots(of: id)
        else { return -1 }
        return dots.count
    }

    /// At quiescence: nothing pending or quarantined on an office's node, except
    /// what waits on the revoked laptop's refused changes (a permanent, reported
    /// cause).
    private func stuck(
        _ offices: [Node], cases: [(id: String, participants: [Node])], laptop: Node?
    ) async throws -> [String] {
        let laptopCase = laptop == nil ? nil : cases.last?.id
        var problems: [String] = []
        for (caseID, participants) in cases where caseID != laptopCase {
            for node in participants where offices.contains(where: { $0 === node }) {
                let pending = pendingCount(node, caseID)
                if pending != 0 { problems.append("\(caseID): \(node.replica) keeps \(pending) changes pending") }
            }
        }
        for node in offices {
            let listed = try await command(["quarantine", "--json", "--data", node.data], node: nil)
            let entries = (try? JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [[String: Any]]) ?? []
            // Only the revoked laptop's changes (of its case or of its access log) may
            // stay quarantined, and only for its revocation.
            for entry in entries {
                if let laptop, entry["origin"] as? String == laptop.replica.rawValue,
                    (entry["reason"] as? String)?.contains("no longer verifies") == true
                {
                    continue
                }
                problems.append(
                    "\(node.replica): quarantined \(entry["case"] ?? "?") from \(entry["origin"] ?? "?"): "
                        + "\(entry["reason"] ?? "?")")
            }
        }
        return problems
    }

    // MARK: Processes

    /// Starts `serve` for `node`, syncing every second with every other node, and
    /// waits (at most 20 s) for its listening line.
    private func start(_ node: Node, among nodes: [Node], authority: EphemeralAuthority) async throws {
        var arguments = [
            "serve", "--data", node.data, "--listen", "127.0.0.1:\(node.port)", "--cert", node.certificate,
            "--key", node.key, "--ca", authority.certificatePath, "--crl", authority.revocationListPath,
            "--interval", "1", "--log-level", "error", "--config", root + "/serve.conf",
        ]
        // A session with a stopped peer ends after 5 s of silence, not 30.
        try "idle-timeout = 5\n".write(toFile: root + "/serve.conf", atomically: true, encoding: .utf8)
        for other in nodes where other !== node {
            arguments += ["--peer", "\(other.replica.rawValue)=127.0.0.1:\(other.port)"]
        }
        let output = root + "/serve-\(node.index).out"
        // A port just released by a killed node can take a moment to be free again.
        for attempt in 0..<5 {
            _ = FileManager.default.createFile(atPath: output, contents: nil)
            let process = try launch(arguments, skew: nil, stdout: output, stderr: root + "/serve-\(node.index).log")
            node.process = process
            node.stopped = false
            for _ in 0..<400 where process.isRunning {
                if let text = try? String(contentsOfFile: output, encoding: .utf8), text.contains("\"listening\"") {
                    return
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            Self.end(node)
            if attempt == 4 {
                let log = (try? String(contentsOfFile: root + "/serve-\(node.index).log", encoding: .utf8)) ?? ""
                throw CLIError(message: "serve for \(node.replica) did not start: \(log.suffix(400))")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    private func resume(_ node: Node) {
        if let pid = node.process?.processIdentifier, node.running { kill(pid, SIGCONT) }
        node.stopped = false
    }

    /// Ends a node's `serve`: kill -9, or SIGTERM and a graceful stop.
    private static func end(_ node: Node, gracefully: Bool = false) {
        guard let process = node.process, process.isRunning else {
            node.process = nil
            return
        }
        let pid = process.processIdentifier
        if node.stopped { kill(pid, SIGCONT) }
        kill(pid, gracefully ? SIGTERM : SIGKILL)
        for _ in 0..<400 where process.isRunning { usleep(25_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        for _ in 0..<400 where process.isRunning { usleep(25_000) }
        node.process = nil
        node.stopped = false
    }

    /// Runs one `casemesh` command to its end (at most 60 s), under the node's
    /// libfaketime offset if it has one.
    private func command(_ arguments: [String], node: Node?) async throws -> Ran {
        let id = UUID().uuidString
        let out = root + "/cmd-\(id).out"
        let err = root + "/cmd-\(id).err"
        defer {
            try? FileManager.default.removeItem(atPath: out)
            try? FileManager.default.removeItem(atPath: err)
        }
        let process = try launch(arguments, skew: node?.skew, stdout: out, stderr: err)
        var timedOut = false
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while process.isRunning {
            if ContinuousClock.now > deadline {
                timedOut = true
                kill(process.processIdentifier, SIGKILL)
                for _ in 0..<400 where process.isRunning { try await Task.sleep(for: .milliseconds(25)) }
                break
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        return Ran(
            status: process.terminationStatus, output: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            errors: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "", timedOut: timedOut)
    }

    private func launch(_ arguments: [String], skew: String?, stdout: String, stderr: String) throws -> ChildProcess {
        var environment = ProcessInfo.processInfo.environment
        if skew != nil {
            // Timeouts keep real time; only the wall clock is off.
            environment["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        }
        let executable = skew == nil ? configuration.binary : Self.faketime
        let argv = skew.map { ["-f", $0, configuration.binary] } ?? []
        return try ChildProcess(
            executable, arguments: argv + arguments, environment: environment, stdout: stdout, stderr: stderr)
    }

    /// A loopback port free right now (bound, read, released).
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw CLIError(message: "cannot open a socket to find a free port") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound else { throw CLIError(message: "cannot find a free loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A child process started with posix_spawn, its output in files.
///
/// Written by hand rather than with Foundation's `Process`: after a few thousand
/// launches in one harness run, `Process.run()` crashed inside Foundation (a bad
/// pointer in its argument copying), which ended a 30-minute run. This needs only
/// spawn, signal and a non-blocking wait.
final class ChildProcess {
    let processIdentifier: pid_t
    private var status: Int32?

    init(_ executable: String, arguments: [String], environment: [String: String], stdout: String, stderr: String)
        throws
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with no signal blocked and SIGTERM, SIGINT, SIGPIPE at their
        // defaults, whatever this process's threads had.
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw CLIError(message: "cannot start \(executable): \(String(cString: strerror(result)))")
        }
        processIdentifier = pid
    }

    /// Whether it still runs (reaps it once it has ended).
    var isRunning: Bool {
        guard status == nil else { return false }
        var raw: Int32 = 0
        let reaped = waitpid(processIdentifier, &raw, WNOHANG)
        if reaped == processIdentifier {
            // Exited: its code; killed by a signal: 128 + the signal, as a shell says.
            let signal = raw & 0x7f
            status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
            return false
        }
        if reaped < 0 && errno != EINTR {
            status = -1
            return false
        }
        return true
    }

    /// How it ended (-1 while it runs).
    var terminationStatus: Int32 { isRunning ? -1 : status ?? -1 }

    deinit {
        if isRunning {
            kill(processIdentifier, SIGKILL)
            var raw: Int32 = 0
            waitpid(processIdentifier, &raw, 0)
        }
    }
}
