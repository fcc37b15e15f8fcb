import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Space set aside beside the database for access-log entries that could not be
/// written because the disk is full.
///
/// Reading a case must stay possible on a full disk (a case worker on a home visit
/// still needs the household's plan), but PIPA's rule that every access is recorded
/// must hold too. So the node reserves a file of fixed size when it opens the store
/// (`posix_fallocate`: the blocks are taken then, so writing inside the file later
/// needs no new space) and, when the database refuses an access entry for want of
/// space, writes the entry here and makes it durable before any data is returned.
/// The entries move into the cases' access logs, in order and with the time the
/// access happened, the next time the store can write; the file is emptied then.
/// When the reserve itself is full the read is refused, never done unrecorded.
///
/// Layout: an 8-byte little-endian count of used bytes, then JSON lines. The count
/// is written (and synced) after the line, so a crash between the two loses a line
/// whose read never returned data.
///
/// Written by hand: SQLite cannot write into a full disk, and no package in the
/// mirror keeps a preallocated journal.
final class AccessSpill: Sendable {
    /// What one spilled entry holds.
    struct Entry: Codable, Sendable, Equatable {
        var caseIDs: [String]
        var record: AccessRecord
        var occurredAtMillis: UInt64
    }

    static let fileName = "access-reserve"
    /// 1 MiB: about 3,000 reads of a full disk's worth of time, for a few kilobytes.
    static let defaultCapacity = 1 << 20
    private static let headerBytes = 8

    let path: String
    let capacity: Int
    /// Whether entries may be waiting (checked without a system call on every read).
    private let lock = Mutex(true)

    /// Room kept at the end of the file for the database itself: SQLite cannot open a
    /// WAL database on a full disk (the first connection of a process rebuilds the
    /// `-shm` index file, 32 KiB), so ``releaseRoom(in:)`` gives this back then.
    static let roomForTheDatabase = 256 << 10

    /// Opens (or creates and preallocates) the reserve in `directory`; nil when it
    /// cannot be made (a disk already full when the store was created).
    static func open(directory: String, capacity: Int = defaultCapacity) -> AccessSpill? {
        let path = (directory as NSString).appendingPathComponent(fileName)
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return nil }
        let full = headerBytes + capacity + roomForTheDatabase
        if Int(status.st_size) < full {
            // The room may be missing (given back on a full disk); the reserve proper
            // must be there.
            let made = posix_fallocate(fd, 0, off_t(full)) == 0 && fsync(fd) == 0
            guard made || Int(status.st_size) >= headerBytes + capacity else { return nil }
        }
        return AccessSpill(path: path, capacity: capacity)
    }

    /// Gives the room kept for the database back to the file system (see
    /// ``roomForTheDatabase``); true when there was room to give.
    static func releaseRoom(in directory: String, capacity: Int = defaultCapacity) -> Bool {
        let path = (directory as NSString).appendingPathComponent(fileName)
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, Int(status.st_size) > headerBytes + capacity else { return false }
        return ftruncate(fd, off_t(headerBytes + capacity)) == 0
    }

    private init(path: String, capacity: Int) {
        self.path = path
        self.capacity = capacity
    }

    /// Appends an entry and syncs it.
    ///
    /// - Throws: ``StoreError`` `database` when the reserve is full or cannot be written.
    func append(_ entry: Entry) throws(StoreError) {
        let line: [UInt8]
        do {
            line = Array(try JSONEncoder().encode(entry)) + [0x0A]
        } catch {
            throw StoreError(code: .database, message: "cannot encode an access entry: \(error)")
        }
        let result: Result<Void, StoreError> = lock.withLock { waiting in
            waiting = true
            let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { return .failure(Self.failure("open")) }
            defer { close(fd) }
            let used = Self.usedBytes(fd)
            guard used + line.count <= capacity else {
                return .failure(
                    StoreError(
                        code: .database,
                        message: "the disk is full and the reserve for access records is used up: "
                            + "free space on the data directory's disk before reading more cases"))
            }
            guard Self.write(fd, line, at: Self.headerBytes + used), fsync(fd) == 0 else {
                return .failure(Self.failure("write"))
            }
            guard Self.writeHeader(fd, used + line.count), fsync(fd) == 0 else {
                return .failure(Self.failure("write"))
            }
            return .success(())
        }
        try result.get()
    }

    /// The entries waiting, oldest first.
    func entries() -> [Entry] {
        lock.withLock { waiting in
            guard waiting else { return [] }
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return [] }
            defer { close(fd) }
            let used = min(Self.usedBytes(fd), capacity)
            guard used > 0 else {
                waiting = false
                return []
            }
            var bytes = [UInt8](repeating: 0, count: used)
            let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, used, off_t(Self.headerBytes)) }
            guard read == used else { return [] }
            let decoder = JSONDecoder()
            return bytes.split(separator: 0x0A).compactMap { try? decoder.decode(Entry.self, from: Data($0)) }
        }
    }

    /// Empties the reserve (its blocks stay allocated) once its entries are stored.
    func clear() {
        lock.withLock { waiting in
            waiting = false
            let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { return }
            defer { close(fd) }
            // The lines are overwritten too: they name cases and accounts.
            let used = min(Self.usedBytes(fd), capacity)
            if used > 0 { _ = Self.write(fd, [UInt8](repeating: 0, count: used), at: Self.headerBytes) }
            _ = Self.writeHeader(fd, 0)
            _ = fsync(fd)
        }
    }

    private static func failure(_ what: String) -> StoreError {
        StoreError(
            code: .database,
            message: "cannot \(what) the reserve for access records: \(String(cString: strerror(errno)))")
    }

    private static func usedBytes(_ fd: Int32) -> Int {
        var header = [UInt8](repeating: 0, count: headerBytes)
        let read = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, headerBytes, 0) }
        guard read == headerBytes else { return 0 }
        let value = header.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        // A header past the file's capacity is not ours to trust: read nothing.
        return value <= UInt64(Int32.max) ? Int(value) : 0
    }

    private static func writeHeader(_ fd: Int32, _ used: Int) -> Bool {
        let header = (0..<headerBytes).map { UInt8(truncatingIfNeeded: UInt64(used) >> (8 * UInt64($0))) }
        return write(fd, header, at: 0)
    }

    private static func write(_ fd: Int32, _ bytes: [UInt8], at offset: Int) -> Bool {
        bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, bytes.count, off_t(offset)) } == bytes.count
    }
}
