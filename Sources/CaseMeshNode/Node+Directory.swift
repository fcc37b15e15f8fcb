import CaseMeshCRDT
public import CaseMeshModel
import CaseMeshNet
import CaseMeshStore
import Foundation
import Synchronization
import X509

/// The consortium directory in a running node: loaded at start (a bad file stops
/// the start, as a bad CRL does), re-read when the file changes (checked every sync
/// round) and on reload; a replacement that does not verify is refused with the
/// reason logged and the one in use stays. The verified copy is installed in the
/// data directory, where the command line and the API read it.
extension Node {
    /// The directory in use and the file state it was read from.
    final class DirectoryBox: Sendable {
        let value = Mutex<(directory: ConsortiumDirectory?, modified: Date?, size: Int)>((nil, nil, 0))
    }

    /// The consortium directory in use, if any.
    public nonisolated var directory: ConsortiumDirectory? {
        if let loaded = directoryBox.value.withLock({ $0.directory }) { return loaded }
        return try? store.memberDirectory()
    }

    /// The peers of a round: the configured ones, then the nodes the directory lists
    /// for every institution this node shares cases with (each replica once).
    public nonisolated func peersToSync() -> [NodeConfiguration.Peer] {
        var peers = configuration.peers
        guard let directory, let sharing = try? store.sharingInstitutions() else { return peers }
        var seen = Set(peers.map(\.replica))
        for institution in sharing.sorted() {
            for node in directory.member(institution)?.nodes ?? [] where node.replica != store.replicaID {
                guard seen.insert(node.replica).inserted,
                    let (host, port) = try? NodeConfiguration.parseAddress(node.address)
                else { continue }
                peers.append(NodeConfiguration.Peer(replica: node.replica, host: host, port: port))
            }
        }
        return peers
    }

    /// An institution as logs show it: its name from the directory, and its ID.
    nonisolated func label(_ replica: ReplicaID) -> String {
        guard let member = directory?.member(replica.institution) else { return replica.rawValue }
        return "\(member.name) (\(replica))"
    }

    /// Loads, verifies and installs the directory file `path` against `authority`.
    ///
    /// - Throws: ``NodeError`` naming the problem; nothing in use changes then.
    nonisolated func loadDirectory(_ path: String, authority: Certificate) throws(NodeError) {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw NodeError("cannot read the consortium directory \(path)")
        }
        let directory: ConsortiumDirectory
        do {
            directory = try SignedDirectory.verify([UInt8](bytes), authority: authority)
            try store.installDirectory(directory, envelope: [UInt8](bytes))
        } catch let error as NetError {
            throw NodeError("\(path): \(error.message)")
        } catch let error as StoreError {
            throw NodeError("\(path): \(error.message)")
        } catch {
            throw NodeError("\(path): \(error)")
        }
        directoryBox.value.withLock {
            $0 = (directory, attributes?[.modificationDate] as? Date, attributes?[.size] as? Int ?? 0)
        }
    }

    /// Re-reads the directory file when it changed since it was read (once per sync
    /// round, like the CRL at each connection); a bad replacement is logged and the
    /// directory in use stays.
    nonisolated func refreshDirectory() {
        guard let path = configuration.directory,
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        else { return }
        let modified = attributes[.modificationDate] as? Date
        let size = attributes[.size] as? Int ?? 0
        let current = directoryBox.value.withLock { $0 }
        guard current.modified != modified || current.size != size else { return }
        do {
            try loadDirectory(path, authority: transport.credentials.authority)
            logger.notice(
                "consortium directory loaded",
                metadata: [
                    "serial": "\(directory?.serial ?? 0)", "members": "\(directory?.members.count ?? 0)",
                ])
        } catch {
            // Not read again until the file changes once more.
            directoryBox.value.withLock {
                $0.modified = modified; $0.size = size
            }
            logger.warning("consortium directory refused, the one in use stays", metadata: ["reason": "\(error)"])
        }
    }
}
