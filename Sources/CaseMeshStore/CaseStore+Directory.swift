public import CaseMeshCRDT
public import CaseMeshModel
import Foundation
import GRDB
import Synchronization

/// The consortium directory as this node holds it: a copy of the signed file,
/// installed in the data directory by `serve` once its signature checked out
/// (`SignedDirectory` in CaseMeshNode), read by every command that names or checks
/// institutions.
extension CaseStore {
    /// The installed copy's file name inside a data directory.
    public static let directoryFileName = "directory.json"

    /// The data directory this store lives in (nil in memory).
    var dataDirectory: String? {
        let path = writer.path
        guard !path.isEmpty, !path.hasPrefix(":memory:"), !path.hasPrefix("file:") else { return nil }
        return (path as NSString).deletingLastPathComponent
    }

    /// The consortium directory installed here, if any (cached while the file is
    /// unchanged).
    ///
    /// - Throws: ``StoreError`` `corrupt` when the installed copy does not read.
    public func memberDirectory() throws(StoreError) -> ConsortiumDirectory? {
        guard let dataDirectory else { return nil }
        let path = (dataDirectory as NSString).appendingPathComponent(Self.directoryFileName)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let modified = attributes[.modificationDate] as? Date, let size = attributes[.size] as? Int
        else { return nil }
        if let cached = installedDirectories.withLock({ $0[path] }), cached.modified == modified, cached.size == size {
            return cached.directory
        }
        guard let bytes = FileManager.default.contents(atPath: path) else { return nil }
        do {
            let directory = try ConsortiumDirectory(envelope: [UInt8](bytes))
            installedDirectories.withLock { $0[path] = (modified, size, directory) }
            return directory
        } catch {
            throw StoreError(code: .corrupt, message: "the installed consortium directory \(path): \(error.message)")
        }
    }

    /// Installs a directory whose signature the caller checked, unless the one
    /// installed is the same or newer (a replayed old list is refused).
    ///
    /// - Returns: whether the installed directory changed.
    /// - Throws: ``StoreError`` `invalidWrite` for an older serial than the one installed.
    @discardableResult
    public func installDirectory(_ directory: ConsortiumDirectory, envelope: [UInt8]) throws(StoreError) -> Bool {
        guard let dataDirectory else { return false }
        if let installed = try? memberDirectory() {
            guard directory.serial >= installed.serial else {
                throw StoreError(
                    code: .invalidWrite,
                    message: "the consortium directory has serial \(directory.serial), older than serial "
                        + "\(installed.serial) in use: refused (an old list must not bring back a removed member)")
            }
            if directory.serial == installed.serial { return false }
        }
        let path = (dataDirectory as NSString).appendingPathComponent(Self.directoryFileName)
        guard FileManager.default.createFile(atPath: path + ".new", contents: Data(envelope)),
            rename(path + ".new", path) == 0
        else { throw StoreError(code: .database, message: "cannot install the consortium directory at \(path)") }
        return true
    }

    /// The institutions this node shares cases with: every institution made a
    /// participant of a case held here, its own excepted (whose nodes it syncs with).
    public func sharingInstitutions() throws(StoreError) -> Set<InstitutionID> {
        let own = replicaID.institution
        return try read { db in
            var found: Set<InstitutionID> = []
            for name in try String.fetchAll(db, sql: "SELECT DISTINCT institution FROM participantGrant") {
                if let institution = try? InstitutionID(name), institution != own { found.insert(institution) }
            }
            return found
        }
    }
}

/// Installed directories by path, with the file's modification time and size.
private let installedDirectories = Mutex<[String: (modified: Date, size: Int, directory: ConsortiumDirectory)]>([:])
