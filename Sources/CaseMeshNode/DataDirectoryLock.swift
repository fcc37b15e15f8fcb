import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// An exclusive hold on a data directory for the one `casemesh serve` that runs on it.
///
/// Two nodes on one store would each seal, purge and sync it as its only owner (and
/// fight over the listening port); the second is refused with the holder's PID. The
/// lock is an `flock` on `serve.lock` in the directory, so it goes with the process,
/// kill -9 included: no stale lock outlives a crash. The command line's short-lived
/// commands (`case`, `changes`, `audit`, …) take no such lock and keep working
/// beside a running node; SQLite serialises their writes.
public final class DataDirectoryLock: Sendable {
    private let descriptor: Int32

    /// The lock file's name inside a data directory.
    public static let fileName = "serve.lock"

    /// Takes the lock, or throws naming the process that holds it.
    public init(directory: String) throws(NodeError) {
        let path = (directory as NSString).appendingPathComponent(Self.fileName)
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw NodeError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = read(descriptor, &buffer, buffer.count)
            close(descriptor)
            let holder = String(decoding: buffer.prefix(max(0, count)), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            throw NodeError(
                "another casemesh serve (PID \(holder.isEmpty ? "unknown" : holder)) is running on \(directory); "
                    + "stop it first (one node per data directory)")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pid.withUnsafeBufferPointer { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }
}
