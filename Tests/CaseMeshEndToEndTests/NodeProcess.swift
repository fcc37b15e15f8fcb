import Foundation
import Testing

/// A consortium CA made with the project's own `certs/casemesh-ca` script.
struct TestAuthority {
    let directory: String

    static let script: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent("certs/casemesh-ca").path
    }()

    static func shell(_ command: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", command]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    init(in root: String, name: String = "ca") throws {
        directory = root + "/" + name
        let result = try Self.shell("'\(Self.script)' init '\(directory)'")
        #expect(result.status == 0, "casemesh-ca init: \(result.output)")
    }

    /// Issues a certificate; returns the TLS flags for it.
    func issue(_ replica: String) throws -> [String] {
        let result = try Self.shell("'\(Self.script)' issue '\(directory)' '\(replica)'")
        #expect(result.status == 0, "casemesh-ca issue: \(result.output)")
        let lines = result.output.split(separator: "\n").map(String.init)
        return ["--cert", lines[0], "--key", lines[1], "--ca", directory + "/ca.pem", "--crl", directory + "/crl.pem"]
    }

    func revoke(_ replica: String) throws {
        let result = try Self.shell("'\(Self.script)' revoke '\(directory)' '\(replica)'")
        #expect(result.status == 0, "casemesh-ca revoke: \(result.output)")
    }

    /// A certificate signed by this CA whose validity ended in 2020.
    func issueExpired(_ replica: String) throws -> [String] {
        let name = replica.replacingOccurrences(of: "/", with: "__") + "-expired"
        let config = URL(fileURLWithPath: Self.script).deletingLastPathComponent().appendingPathComponent(
            "openssl-ca.cnf"
        ).path
        let escaped = replica.replacingOccurrences(of: "/", with: "\\/")
        let command = """
            set -e; cd '\(directory)'
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out nodes/\(name).key 2>/dev/null
            openssl req -new -key nodes/\(name).key -subj '/CN=\(escaped)' -out nodes/\(name).csr 2>/dev/null
            CASEMESH_CA_DIR='\(directory)' CASEMESH_SAN='URI:casemesh://replica/\(replica)' openssl ca -config '\(config)' \
              -batch -notext -startdate 20200101000000Z -enddate 20200201000000Z -extensions node_extensions \
              -in nodes/\(name).csr -out nodes/\(name).pem 2>/dev/null
            """
        let result = try Self.shell(command)
        #expect(result.status == 0, "expired certificate: \(result.output)")
        return [
            "--cert", directory + "/nodes/\(name).pem", "--key", directory + "/nodes/\(name).key", "--ca",
            directory + "/ca.pem",
        ]
    }
}

/// A `casemesh serve` process on loopback.
final class NodeProcess {
    let process: Process
    let port: Int
    let logPath: String
    private let stdout: Pipe
    private var pending: [[String: Any]] = []

    /// One line of `serve`'s standard output, waiting at most 20 s in all: each read
    /// waits in poll() for what is left of the deadline, so a node that stops
    /// printing (hung, or stopped by a signal) cannot hold the test.
    private static func readLine(_ pipe: Pipe) -> [String: Any]? {
        var line = Data()
        let descriptor = pipe.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(20)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { break }
            var wanted = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&wanted, 1, Int32(min(left, 20) * 1000) + 1)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { break }
            var byte: UInt8 = 0
            guard read(descriptor, &byte, 1) == 1, byte != UInt8(ascii: "\n") else { break }
            line.append(byte)
        }
        return try? JSONSerialization.jsonObject(with: line) as? [String: Any]
    }

    /// Starts `casemesh serve` and waits (at most 20 s) for it to announce its port.
    init(_ arguments: [String], logPath: String, listen: String = "127.0.0.1:0") throws {
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let stdout = Pipe()
        self.stdout = stdout
        process = Process()
        process.executableURL = Binary.url
        process.arguments = ["serve", "--listen", listen] + arguments
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        self.logPath = logPath
        try process.run()
        // Announcements may come in either order (the sync listener's, the HTTP one's).
        var port: Int?
        var first = ""
        for _ in 0..<4 {
            guard let announced = Self.readLine(stdout) else { break }
            if first.isEmpty { first = "\(announced)" }
            if announced["event"] as? String == "listening" {
                port = announced["port"] as? Int
                break
            }
            pending.append(announced)
        }
        guard let port else {
            process.terminate()
            throw NodeProcessError(message: "serve did not announce a port: \(first)")
        }
        self.port = port
    }

    /// The next JSON line `serve` prints (after the first), waiting at most 20 s.
    func nextAnnouncement() -> [String: Any]? {
        if !pending.isEmpty { return pending.removeFirst() }
        return Self.readLine(stdout)
    }

    var address: String { "127.0.0.1:\(port)" }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, and the exit status.
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

struct NodeProcessError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Polls `condition` every 100 ms for at most `seconds`.
func eventually(_ seconds: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(100_000)
    }
    return try condition()
}

/// Several replicas, each initialised in `root/SHORT` with a certificate from one test CA.
struct TestConsortium {
    let root: String
    let authority: TestAuthority
    /// Short name to replica ID.
    let names: [String: String]
    /// Short name to its `--cert --key --ca --crl` arguments.
    private(set) var tls: [String: [String]] = [:]

    init(in root: String, _ names: [String: String]) throws {
        self.root = root
        self.names = names
        authority = try TestAuthority(in: root)
        for (short, replica) in names {
            try Binary.ok(["init", "--replica", replica, "--data", root + "/" + short])
            tls[short] = try authority.issue(replica)
        }
    }

    func data(_ short: String) -> [String] { ["--data", root + "/" + short] }
}
