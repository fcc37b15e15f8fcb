public import CaseMeshCRDT
import CaseMeshNet
public import CaseMeshStore
public import CaseMeshSyncDriver
import Foundation
public import Logging
import NIOPosix

/// Several institutions' nodes in one process on loopback, each with its own store
/// and a certificate from an ephemeral CA, talking real mutual TLS: the demo and the
/// sync benchmark run on it.
public final class LocalConsortium: Sendable {
    public struct Member: Sendable {
        public let replica: ReplicaID
        public let store: CaseStore
        public let node: Node
        public let address: NodeConfiguration.Peer
    }

    public let members: [ReplicaID: Member]
    private let tasks: [Task<Void, Never>]

    /// Creates the CA, the stores (in `root`) and the nodes, and starts their listeners.
    public init(root: String, replicas: [ReplicaID], logger: Logger) async throws {
        let authority = try EphemeralAuthority(directory: root + "/ca")
        var members: [ReplicaID: Member] = [:]
        var tasks: [Task<Void, Never>] = []
        for replica in replicas {
            let files = try authority.issue(replica)
            let store = try CaseStore.create(
                directory: root + "/" + replica.rawValue.replacingOccurrences(of: "/", with: "__"), replicaID: replica)
            var configuration = NodeConfiguration()
            configuration.certificate = files.certificate
            configuration.key = files.key
            configuration.authority = authority.certificatePath
            configuration.listenHost = "127.0.0.1"
            configuration.listenPort = 0
            let node = try Node(
                configuration: configuration, store: store, group: MultiThreadedEventLoopGroup.singleton, logger: logger
            )
            tasks.append(Task { try? await node.run() })
            var port: Int?
            for _ in 0..<500 where port == nil {
                port = await node.boundPort
                if port == nil { try await Task.sleep(for: .milliseconds(10)) }
            }
            guard let port else { throw NodeError("the node for \(replica) did not start listening") }
            members[replica] = Member(
                replica: replica, store: store, node: node,
                address: NodeConfiguration.Peer(replica: replica, host: "127.0.0.1", port: port))
        }
        self.members = members
        self.tasks = tasks
    }

    /// `from` dials `to` and they sync both ways.
    public func sync(_ from: ReplicaID, with to: ReplicaID) async -> SyncRunner.Outcome {
        guard let dialer = members[from], let peer = members[to] else {
            return SyncRunner.Outcome(summary: .init(), error: .connectionLost("unknown member"), refused: [])
        }
        return await dialer.node.sync(with: peer.address)
    }

    /// Stops every node.
    public func shutdown() async {
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }
}
