import ArgumentParser
import CaseMeshNode
import CaseMeshOperations
import Foundation
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
    import Glibc
#endif

/// What a reload ended with, written by `serve` to `DATA/reload.result` for
/// `casemesh reload` (and whoever else looks): one JSON object.
enum ReloadResult {
    static let fileName = "reload.result"

    static func write(directory: String, ok: Bool, message: String) {
        let path = (directory as NSString).appendingPathComponent(fileName)
        let text = JSONValue.object([
            "ok": .bool(ok), "message": .string(message),
            "at": .number(Int64(Date().timeIntervalSince1970 * 1000)),
        ]).text
        try? Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    static func read(directory: String) -> (ok: Bool, message: String, at: Int64)? {
        let path = (directory as NSString).appendingPathComponent(fileName)
        guard let data = FileManager.default.contents(atPath: path),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let ok = object["ok"] as? Bool, let message = object["message"] as? String,
            let at = (object["at"] as? NSNumber)?.int64Value
        else { return nil }
        return (ok, message, at)
    }
}

/// `serve`'s SIGHUP: re-read the certificate, key, CA and CRL without a restart.
struct ReloadOnHangup: Service {
    let node: Node
    let directory: String
    /// The configuration read again as at the start (the file, then the flags).
    let reread: @Sendable () throws -> NodeConfiguration

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                do {
                    let configuration: NodeConfiguration
                    do { configuration = try reread() } catch {
                        ReloadResult.write(
                            directory: directory, ok: false,
                            message: "the configuration was refused, everything in use stays: \(error)")
                        continue
                    }
                    let line = try await node.reload(configuration: configuration)
                    ReloadResult.write(directory: directory, ok: true, message: line)
                } catch let error as NodeError {
                    ReloadResult.write(directory: directory, ok: false, message: error.message)
                } catch {
                    ReloadResult.write(directory: directory, ok: false, message: "\(error)")
                }
            }
        }
    }
}

/// `casemesh reload`: tells the `serve` of a data directory to re-read its files.
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Make the running serve re-read its configuration, certificate, key, CA and CRL (as SIGHUP does).",
        discussion: """
            Sends SIGHUP to the serve that holds --data and waits (up to 10 s) for its answer: new connections \
            use the new files and the next round dials the new peers, connections in flight finish; a file that \
            does not load is refused and the old ones stay in use (exit status 1). The listen address, the interval \
            and the HTTP settings take a restart.
            """)

    @Option(help: "The node's data directory (default ./casemesh-data).") var data = "./casemesh-data"

    func run() throws {
        let path = (data as NSString).appendingPathComponent(DataDirectoryLock.fileName)
        // A lock we can take means no serve holds the directory.
        if let probe = try? DataDirectoryLock(directory: data) {
            withExtendedLifetime(probe) {}
            throw CLIError(message: "no serve is running on \(data)")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1
        else { throw CLIError(message: "cannot read the PID of the serve holding \(data) from \(path)") }
        let before = ReloadResult.read(directory: data)?.at ?? 0
        guard kill(pid, SIGHUP) == 0 else {
            throw CLIError(message: "cannot signal serve (PID \(pid)): \(String(cString: strerror(errno)))")
        }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let result = ReloadResult.read(directory: data), result.at > before {
                if result.ok {
                    emit(result.message)
                    return
                }
                throw CLIError(message: result.message)
            }
            usleep(100_000)
        }
        throw CLIError(message: "serve (PID \(pid)) did not answer within 10 s; see its log")
    }
}
