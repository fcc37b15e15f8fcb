public import CaseMeshCRDT
import Crypto
import Foundation
import GRDB

/// What `backup(to:)` wrote.
public struct BackupReport: Hashable, Sendable {
    /// The backup file and its checksum file (`FILE.sha256`, `sha256sum` format).
    public var path: String
    public var checksumPath: String
    /// SHA-256 of the backup file, hex.
    public var sha256: String
    public var bytes: Int64
    public var replica: ReplicaID
    /// The change log's length at the backup.
    public var logLength: UInt64
}

/// What `restore(from:into:)` did.
public struct RestoreReport: Hashable, Sendable {
    public var replica: ReplicaID
    /// Where the store that was replaced was kept (nil when there was none).
    public var previousStore: String?
    /// The peers this replica must sync with before it makes changes of its own.
    public var waitingFor: [ReplicaID]
    public var logLength: UInt64
}

extension CaseStore {
    /// Writes a consistent copy of the store to `path` while the node runs: SQLite's
    /// online backup (through GRDB) from a reader, in steps of 1,024 pages, so sync
    /// and the API keep writing; then its SHA-256 beside it in `path.sha256`.
    ///
    /// - Throws: ``StoreError`` `database` when the file cannot be written (it is
    ///   removed), `alreadyInitialized` when `path` exists.
    public func backup(to path: String) throws(StoreError) -> BackupReport {
        guard !FileManager.default.fileExists(atPath: path) else {
            throw StoreError(code: .alreadyInitialized, message: "\(path) exists: give --out a new file")
        }
        let replica = replicaID
        do {
            let target = try DatabaseQueue(path: path)
            try writer.backup(to: target, pagesPerStep: 1024)
            // One self-contained file: no write-ahead log beside it.
            try target.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = DELETE") }
            try target.close()
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw StoreError(code: .database, message: "cannot write the backup \(path): \(error)", cause: error)
        }
        let digest = try Self.sha256(ofFile: path)
        let checksumPath = path + ".sha256"
        let line = "\(digest)  \((path as NSString).lastPathComponent)\n"
        do { try Data(line.utf8).write(to: URL(fileURLWithPath: checksumPath), options: .atomic) } catch {
            throw StoreError(code: .database, message: "cannot write \(checksumPath): \(error)", cause: error)
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) ?? 0
        return BackupReport(
            path: path, checksumPath: checksumPath, sha256: digest, bytes: size, replica: replica,
            logLength: try figures().logLength)
    }

    /// Replaces the replica in `directory` with a backup, so that it comes back without
    /// losing or duplicating anything:
    ///
    /// - the backup is checked first (its checksum file, SQLite's integrity check, the
    ///   replica it belongs to) and nothing in `directory` is touched if it fails;
    /// - its change log gets a new identity, so every peer pulls it again from the
    ///   start (what a peer holds is skipped), and its pull cursors are forgotten, so
    ///   it pulls every peer's log whole — its own changes made after the backup, which
    ///   its peers hold, come back to it too;
    /// - until it has synced with every peer it knew at the backup it makes no change
    ///   of its own (``StoreError/Code/restoreHold``): a change numbered before the
    ///   restore, held only by a peer, is never numbered again;
    /// - the replaced store is kept beside it (`casemesh.sqlite.before-restore-TIME`).
    ///
    /// The caller holds the data directory (no node serves it).
    public static func restore(
        from backup: String, into directory: String, clock: any WallClock = SystemWallClock()
    ) throws(StoreError) -> RestoreReport {
        try verifyChecksum(of: backup)
        let path = (directory as NSString).appendingPathComponent(databaseFileName)
        let staging = path + ".restoring"
        try? FileManager.default.removeItem(atPath: staging)
        do { try FileManager.default.copyItem(atPath: backup, toPath: staging) } catch {
            throw StoreError(code: .database, message: "cannot copy the backup into \(directory): \(error)")
        }
        var keepStaging = false
        defer { if !keepStaging { try? FileManager.default.removeItem(atPath: staging) } }
        let existing: ReplicaID? =
            FileManager.default.fileExists(atPath: path)
            ? try wrapDatabaseErrors {
                let queue = try DatabaseQueue(path: path, configuration: readOnly())
                defer { try? queue.close() }
                return try queue.read { db in try String.fetchOne(db, sql: "SELECT replicaID FROM replicaInfo") }
                    .flatMap { try? ReplicaID($0) }
            } : nil
        let now = Int64(clock.nowMillis())
        let (replica, waiting, length): (ReplicaID, [ReplicaID], UInt64) = try wrapDatabaseErrors {
            let queue = try DatabaseQueue(path: staging)
            defer { try? queue.close() }
            let problems = try queue.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
            guard problems == ["ok"] else {
                throw StoreError(
                    code: .corrupt,
                    message: "the backup fails SQLite's integrity check: \(problems.prefix(3).joined(separator: "; "))")
            }
            guard
                let name = try queue.read({ db in
                    try String.fetchOne(db, sql: "SELECT replicaID FROM replicaInfo WHERE singleton = 1")
                }), let replica = try? ReplicaID(name)
            else { throw StoreError(code: .corrupt, message: "\(backup) is not a CaseMesh replica's backup") }
            if let existing, existing != replica {
                throw StoreError(
                    code: .invalidWrite,
                    message: "\(backup) is a backup of \(replica), but \(directory) holds \(existing): "
                        + "restore it into an empty directory or the same replica's")
            }
            try Migrations.refuseNewer(queue, directory: directory)
            try Migrations.migrator.migrate(queue)
            return try queue.write { db in
                try db.execute(
                    sql: "UPDATE replicaInfo SET logIdentity = lower(hex(randomblob(16))) WHERE singleton = 1")
                try db.execute(sql: "UPDATE peerState SET pullCursor = 1, logIdentity = ''")
                let peers = try String.fetchAll(db, sql: "SELECT peer FROM peerState ORDER BY peer")
                try db.execute(sql: "DELETE FROM restoreHold")
                for peer in peers {
                    try db.execute(
                        sql: "INSERT INTO restoreHold (peer, restoredAt) VALUES (?, ?)", arguments: [peer, now])
                }
                let length =
                    try Int64.fetchOne(
                        db, sql: "SELECT COALESCE(MAX(firstArrival + changeCount), 1) - 1 FROM changeSegment") ?? 0
                return (replica, peers.compactMap { try? ReplicaID($0) }, UInt64(max(0, length)))
            }
        }
        var previous: String?
        if FileManager.default.fileExists(atPath: path) {
            let aside = path + ".before-restore-\(now)"
            do {
                try FileManager.default.moveItem(atPath: path, toPath: aside)
                for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
                    try FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
                }
            } catch {
                throw StoreError(code: .database, message: "cannot move the current store aside: \(error)")
            }
            previous = aside
        }
        do { try FileManager.default.moveItem(atPath: staging, toPath: path) } catch {
            if let previous { try? FileManager.default.moveItem(atPath: previous, toPath: path) }
            throw StoreError(code: .database, message: "cannot put the restored store in place: \(error)")
        }
        keepStaging = true
        return RestoreReport(replica: replica, previousStore: previous, waitingFor: waiting, logLength: length)
    }

    /// The peers a restored replica still has to sync with before it writes.
    public func restoreHold() throws(StoreError) -> [ReplicaID] {
        try read { db in
            try String.fetchAll(db.cachedStatement(sql: "SELECT peer FROM restoreHold ORDER BY peer")).compactMap {
                try? ReplicaID($0)
            }
        }
    }

    static func refuseWhileRestoring(_ db: Database) throws {
        let peers = try String.fetchAll(db.cachedStatement(sql: "SELECT peer FROM restoreHold ORDER BY peer LIMIT 5"))
        guard !peers.isEmpty else { return }
        throw StoreError(
            code: .restoreHold,
            message: "this replica was restored from a backup and makes no change until it has synced again with "
                + peers.joined(separator: ", ")
                + " (its changes made after the backup may be held there, and it must not number one twice); "
                + "let serve sync, run casemesh sync, or casemesh peers forget a peer that is gone for good")
    }

    static func readOnly() -> Configuration {
        var configuration = Configuration()
        configuration.readonly = true
        return configuration
    }

    static func sha256(ofFile path: String) throws(StoreError) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw StoreError(code: .database, message: "cannot read \(path)")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while true {
            let chunk = (try? handle.read(upToCount: 1 << 20)) ?? nil
            guard let chunk, !chunk.isEmpty else { break }
            hasher.update(data: chunk)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Refuses a backup whose `FILE.sha256` is missing or does not match.
    static func verifyChecksum(of backup: String) throws(StoreError) {
        guard FileManager.default.fileExists(atPath: backup) else {
            throw StoreError(code: .database, message: "no backup at \(backup)")
        }
        let checksumPath = backup + ".sha256"
        guard let text = try? String(contentsOfFile: checksumPath, encoding: .utf8),
            let expected = text.split(separator: " ").first.map(String.init), expected.count == 64
        else {
            throw StoreError(
                code: .corrupt,
                message: "\(checksumPath) is missing or unreadable: a backup is restored with its checksum")
        }
        let actual = try sha256(ofFile: backup)
        guard actual == expected.lowercased() else {
            throw StoreError(
                code: .corrupt,
                message: "\(backup) does not match its checksum (\(checksumPath)): the file is damaged or was changed")
        }
    }
}
