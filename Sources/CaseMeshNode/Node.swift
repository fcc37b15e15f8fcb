import CaseMeshCRDT
public import CaseMeshNet
public import CaseMeshStore
public import CaseMeshSync
public import CaseMeshSyncDriver
public import Foundation
public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization
import X509

/// A running CaseMesh node: accepts sync connections from peers over mutual TLS and
/// dials its configured peers periodically, with jitter and exponential back-off.
///
/// Run it in a `ServiceGroup`, which stops it gracefully on SIGTERM or SIGINT: the
/// listener stops accepting, the sync loop stops dialling, and sessions in flight
/// end (an interrupted sync resumes from its last durable batch next time).
public actor Node: Service {
    /// How the node runs now: as started, then as the last reload left it (peers,
    /// files, limits; see ``reload(configuration:)``).
    public nonisolated var configuration: NodeConfiguration { live.value.withLock { $0 } }
    private nonisolated let live: ConfigurationBox

    /// The configuration in use, replaced as a whole by a reload.
    final class ConfigurationBox: Sendable {
        let value: Mutex<NodeConfiguration>
        init(_ configuration: NodeConfiguration) { value = Mutex(configuration) }
    }
    public nonisolated let store: CaseStore
    public nonisolated let transport: SyncTransport
    nonisolated let logger: Logger
    nonisolated let directoryBox = DirectoryBox()
    private var failures: [ReplicaID: Int] = [:]
    private var activeConnections = 0
    /// The port the listener is bound to (useful with port 0), once listening.
    public private(set) var boundPort: Int?
    /// How this node signs its changes and verifies others'.
    private let authentication: SyncRunner.Authentication
    private var onListening: (@Sendable (Int) -> Void)?
    /// When this node's certificate (the one in use since start or the last reload)
    /// expires.
    public nonisolated var certificateNotAfter: Date { transport.credentials.certificateNotAfter }
    private nonisolated var authority: Certificate { transport.credentials.authority }

    public init(
        configuration: NodeConfiguration, store: CaseStore, group: any EventLoopGroup, logger: Logger,
        onListening: (@Sendable (Int) -> Void)? = nil
    ) throws {
        live = ConfigurationBox(configuration)
        self.store = store
        let credentials = try NodeCredentials(
            certificate: configuration.certificate, key: configuration.key, authority: configuration.authority,
            revocationList: configuration.revocationList)
        guard credentials.replicaID == store.replicaID else {
            throw NodeError(
                "the certificate names \(credentials.replicaID) but the data directory holds replica \(store.replicaID)"
            )
        }
        let verifier = PeerVerifier(credentials: credentials)
        var transport = try SyncTransport(credentials: credentials, verifier: verifier, group: group)
        // Through the transport: after a reload, seals are made with the new key and
        // signers checked against the new CA.
        authentication = SyncRunner.Authentication(
            sign: { [transport] message in try transport.credentials.sign(message) },
            verifyCertificate: { [transport] replica, der in
                try await transport.verifier.verifySigner(replica, certificate: der)
            })
        // This node's own certificate signs its seals; it goes with them to peers.
        try store.trustSigner(
            credentials.replicaID, publicKey: credentials.publicKeyRaw, certificate: credentials.certificateDER)
        try store.sealOwnChanges(sign: { message in try credentials.sign(message) })
        transport.idleTimeout = .seconds(Int64(configuration.idleTimeoutSeconds))
        self.transport = transport
        self.logger = logger
        self.onListening = onListening
        if let path = configuration.directory {
            try loadDirectory(path, authority: credentials.authority)
        }
    }

    /// Re-reads the certificate, key, CA and CRL (the files an operator replaced to
    /// renew them) and, given the configuration read again, takes its peers, file
    /// paths and limits: new connections and new seals use them, connections in
    /// flight finish with the old ones, the next round dials the new peers. A file
    /// that does not load, a certificate of another replica or one the CA did not
    /// sign is refused with the reason, and everything in use stays in use. The
    /// listen address and the HTTP settings take a restart (said in the answer).
    ///
    /// - Returns: one line for the log and `casemesh reload`.
    @discardableResult
    public func reload(configuration reread: NodeConfiguration? = nil) throws(NodeError) -> String {
        do {
            return try loadRenewedFiles(reread)
        } catch {
            logger.warning("reload refused", metadata: ["reason": "\(error.message)"])
            throw error
        }
    }

    private func loadRenewedFiles(_ reread: NodeConfiguration?) throws(NodeError) -> String {
        var next = configuration
        var notes: [String] = []
        if let reread {
            if reread.listenHost != next.listenHost || reread.listenPort != next.listenPort {
                notes.append("the new listen address takes a restart")
            }
            if reread.serveSettings != next.serveSettings { notes.append("the HTTP and admin settings take a restart") }
            if reread.intervalSeconds != next.intervalSeconds { notes.append("the new interval takes a restart") }
            next.certificate = reread.certificate
            next.key = reread.key
            next.authority = reread.authority
            next.revocationList = reread.revocationList
            next.directory = reread.directory
            next.peers = reread.peers
            next.maximumConnections = reread.maximumConnections
            next.accessLogRetentionDays = reread.accessLogRetentionDays
        }
        let credentials: NodeCredentials
        do {
            credentials = try NodeCredentials(
                certificate: next.certificate, key: next.key, authority: next.authority,
                revocationList: next.revocationList)
        } catch {
            throw NodeError("the new files were refused, the old ones stay in use: \(error.message)")
        }
        guard credentials.replicaID == store.replicaID else {
            throw NodeError(
                "the new certificate names \(credentials.replicaID), not \(store.replicaID): refused, the old one stays in use"
            )
        }
        let verifier = PeerVerifier(credentials: credentials)
        if let path = next.revocationList {
            do { _ = try PeerVerifier.loadRevocationList(path, issuer: credentials.authority) } catch {
                throw NodeError("the new CRL was refused, the old files stay in use: \(error.message)")
            }
        }
        if let path = next.directory {
            do throws(NodeError) { try loadDirectory(path, authority: credentials.authority) } catch {
                throw NodeError("the new consortium directory was refused, the old files stay in use: \(error.message)")
            }
        }
        do {
            try store.trustSigner(
                credentials.replicaID, publicKey: credentials.publicKeyRaw, certificate: credentials.certificateDER)
            try transport.reload(credentials: credentials, verifier: verifier)
        } catch {
            throw NodeError("the new certificate could not be put in use, the old one stays: \(error)")
        }
        live.value.withLock { $0 = next }
        let days = Int(credentials.certificateNotAfter.timeIntervalSinceNow / 86_400)
        let line =
            "reloaded the certificate, key, CA and CRL; the certificate expires in \(days) days; "
            + "\(next.peers.count) peers"
            + (directory.map { "; consortium directory serial \($0.serial), \($0.members.count) members" } ?? "")
            + notes.map { "; \($0)" }.joined()
        logger.notice("\(line)")
        warnOfExpiry()
        return line
    }

    /// Logs a warning from 30 days before the certificate runs out, and from 7 days
    /// before the CRL's next update.
    public nonisolated func warnOfExpiry() {
        let days = certificateNotAfter.timeIntervalSinceNow / 86_400
        if days < 30 {
            logger.warning(
                "the node's certificate expires in \(Int(days)) days: renew it (casemesh-ca renew) and reload")
        }
        // A CRL is published for 30 days (certs/openssl-ca.cnf) and replaced weekly.
        if let next = revocationListNextUpdate(), next.timeIntervalSinceNow < 7 * 86_400 {
            logger.warning(
                "the CRL's next update is in \(Int(next.timeIntervalSinceNow / 86_400)) days: publish a fresh one and reload"
            )
        }
    }

    /// When the CRL in use must be replaced by a fresh one (its next update), read
    /// from the file now; nil without a CRL or when the file cannot be read.
    public nonisolated func revocationListNextUpdate() -> Date? {
        guard let path = configuration.revocationList,
            let text = try? String(contentsOfFile: path, encoding: .utf8),
            let list = try? RevocationList(pem: text, issuer: authority)
        else { return nil }
        return list.nextUpdate
    }

    public func run() async throws {
        do {
            try await runUntilShutdown()
        } catch is CancellationError {
            // Graceful shutdown cancels the listener and the loop: that is a normal end.
        }
        logger.info("node stopped")
    }

    private func runUntilShutdown() async throws {
        try await cancelWhenGracefulShutdown {
            try await withThrowingDiscardingTaskGroup { group in
                if let host = self.configuration.listenHost, let port = self.configuration.listenPort {
                    let listener = try await self.transport.listen(host: host, port: port)
                    let bound = listener.channel.localAddress?.port ?? port
                    await self.listening(on: bound)
                    group.addTask { try await self.accept(listener) }
                }
                // Also with no peer yet: a reload may add some.
                group.addTask { await self.syncLoop() }
            }
        }
    }

    private func listening(on port: Int) {
        // A crash's backtracer must not inherit the listening socket (and keep the
        // port from a restart).
        CloseOnExec.markSockets()
        boundPort = port
        logger.info("listening", metadata: ["port": "\(port)", "replica": "\(store.replicaID)"])
        onListening?(port)
    }

    private func accept(_ listener: NIOAsyncChannel<PeerConnection, Never>) async throws {
        try await listener.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { group in
                for try await connection in inbound {
                    guard self.admit() else {
                        self.logger.warning(
                            "connection refused: limit reached (verified peers and handshakes in progress)",
                            metadata: ["remote": "\(connection.remoteAddress)"])
                        await Self.discard(connection)
                        continue
                    }
                    group.addTask {
                        await self.serve(connection)
                        await self.release()
                    }
                }
            }
        }
    }

    /// Admits a connection while there is room. Connections whose peer is not verified
    /// yet may hold at most half the slots, so that peers slow to present a certificate
    /// (or never doing so) cannot keep verified peers out; each also has a total
    /// handshake deadline (``SyncTransport/handshakeTimeout``).
    private func admit() -> Bool {
        guard activeConnections < configuration.maximumConnections,
            handshaking < max(1, configuration.maximumConnections / 2)
        else { return false }
        activeConnections += 1
        handshaking += 1
        return true
    }

    private func verified() { handshaking -= 1 }

    private func release() { activeConnections -= 1 }

    /// Admitted connections whose peer is not verified yet.
    private var handshaking = 0

    /// Serves one inbound connection; failures are logged and end only this connection.
    private func serve(_ connection: PeerConnection) async {
        let peer: ReplicaID
        do {
            peer = try await connection.peer.get()
            verified()
        } catch {
            verified()
            logger.warning("peer refused", metadata: ["remote": "\(connection.remoteAddress)", "reason": "\(error)"])
            await Self.discard(connection)
            return
        }
        let outcome = await runSession(connection, peer: peer, dialled: false)
        // A node that only listens learns of withdrawals from the peers that dial it,
        // and its own edits reach them in the same session: it purges after serving.
        afterSession(outcome)
    }

    /// Closes a connection no session will run on. The async channel must be
    /// finished through `executeThenClose` (closing the NIO channel underneath it
    /// leaves its writer unfinished, which traps).
    private static func discard(_ connection: PeerConnection) async {
        try? await connection.channel.executeThenClose { _, _ in }
    }

    /// Every case this node purged since it started, oldest first.
    public private(set) var purgedCases: [PurgedCase] = []

    /// The log end and time of the last need-to-know pass after a session.
    private var lastNeedToKnow: (logEnd: UInt64, at: ContinuousClock.Instant)?

    /// Runs the need-to-know pass after a session when it may have changed anything:
    /// the session moved changes, the log grew, or a while has passed (consents expire
    /// by the clock). The pass itself purges only cases whose own edits have gone out.
    private func afterSession(_ outcome: SyncRunner.Outcome) {
        let end = (try? store.logEnd()) ?? 0
        let moved = outcome.summary.changesReceived > 0 || outcome.summary.changesSent > 0
        if !moved, let last = lastNeedToKnow, last.logEnd == end,
            ContinuousClock.now - last.at < .seconds(Self.needToKnowInterval)
        {
            return
        }
        enforceNeedToKnow()
        lastNeedToKnow = ((try? store.logEnd()) ?? end, ContinuousClock.now)
    }

    /// The longest a served node waits between need-to-know passes when nothing moves.
    static let needToKnowInterval: Int64 = 30

    /// Runs a sync session on an authenticated connection and logs its outcome.
    private func runSession(
        _ connection: PeerConnection, peer: ReplicaID, dialled: Bool,
        progress: (@Sendable (SyncSummary) -> Void)? = nil
    ) async -> SyncRunner.Outcome {
        let started = ContinuousClock.now
        var runner = SyncRunner(store: store)
        runner.settings.progress = progress
        runner.settings.authentication = authentication
        runner.settings.describe = { NetError.describing($0, address: peer.rawValue, listening: false).message }
        let outcome: SyncRunner.Outcome
        do {
            outcome = try await connection.channel.executeThenClose { inbound, outbound in
                await runner.run(peer: peer, inbound: inbound) { message in try await outbound.write(message) }
            }
        } catch {
            let reason = NetError.describing(error, address: peer.rawValue, listening: false).message
            outcome = SyncRunner.Outcome(summary: SyncSummary(), error: .connectionLost(reason), refused: [])
        }
        var metadata: Logger.Metadata = [
            "peer": "\(label(peer))", "received": "\(outcome.summary.changesReceived)",
            "applied": "\(outcome.summary.changesApplied)", "sent": "\(outcome.summary.changesSent)",
        ]
        if !outcome.refused.isEmpty {
            metadata["refused"] = "\(outcome.refused.count)"
            logger.warning(
                "peer sent changes that were refused", metadata: ["peer": "\(peer)", "first": "\(outcome.refused[0])"])
        }
        let ownSchema = UInt64(store.schema.version)
        let peerSchema = outcome.summary.peerSchemaVersion
        if peerSchema > ownSchema {
            metadata["peer_schema"] = "\(peerSchema)"
            logger.warning(
                "peer follows a newer case schema: what it writes to fields this node lacks is held here until this node upgrades",
                metadata: ["peer": "\(peer)", "peer_schema": "\(peerSchema)", "schema": "\(ownSchema)"])
        } else if peerSchema != 0, peerSchema < ownSchema {
            metadata["peer_schema"] = "\(peerSchema)"
        }
        NodeMetrics.record(outcome, peer: peer, dialled: dialled, duration: ContinuousClock.now - started)
        if let error = outcome.error {
            metadata["error"] = "\(error)"
            logger.warning("sync failed", metadata: metadata)
        } else {
            logger.info("sync done", metadata: metadata)
        }
        return outcome
    }

    /// Dials one peer and syncs with it once.
    ///
    /// - Parameter progress: called after each batch pulled from the peer is applied.
    public func sync(
        with peer: NodeConfiguration.Peer, progress: (@Sendable (SyncSummary) -> Void)? = nil
    ) async -> SyncRunner.Outcome {
        do {
            let connection = try await transport.connect(host: peer.host, port: peer.port)
            let certified: ReplicaID
            do {
                certified = try await connection.peer.get()
            } catch {
                await Self.discard(connection)
                throw error
            }
            guard certified == peer.replica else {
                await Self.discard(connection)
                throw NetError(
                    code: .unexpectedPeer,
                    message: "\(peer.host):\(peer.port) presents the certificate of \(certified), but \(peer.replica) "
                        + "was expected there: check the --peer address")
            }
            let outcome = await runSession(connection, peer: certified, dialled: true, progress: progress)
            failures[peer.replica] = outcome.error == nil ? 0 : (failures[peer.replica] ?? 0) + 1
            afterSession(outcome)
            return outcome
        } catch {
            failures[peer.replica] = (failures[peer.replica] ?? 0) + 1
            let reason = NetError.describing(error, address: "\(peer.host):\(peer.port)", listening: false).message
            try? store.recordSyncOutcome(peer: peer.replica, error: reason)
            NodeMetrics.recordUnreachable(peer.replica)
            logger.warning("cannot reach peer", metadata: ["peer": "\(label(peer.replica))", "reason": "\(reason)"])
            return SyncRunner.Outcome(summary: SyncSummary(), error: .unreachable(reason), refused: [])
        }
    }

    /// Purges the cases this node's institution is no longer entitled to (left the
    /// case, consent withdrawn or expired), keeping tombstones, and destroys access-log
    /// entries past their retention period; logs what it did.
    @discardableResult
    public func enforceNeedToKnow() -> [PurgedCase] {
        do {
            let purged = try store.purgeUnentitledCases()
            purgedCases += purged
            NodeMetrics.recordPurges(purged.count)
            for item in purged {
                logger.notice("case purged", metadata: ["case": "\(item.caseID)", "reason": "\(item.reason)"])
            }
            let destroyed = try store.pruneAccessLogs(olderThanDays: configuration.accessLogRetentionDays)
            if destroyed > 0 {
                logger.notice("access-log entries past retention destroyed", metadata: ["count": "\(destroyed)"])
            }
            return purged
        } catch {
            logger.error("purge failed", metadata: ["reason": "\(error.message)"])
            return []
        }
    }

    /// Syncs with every peer in turn (``peersToSync()``), each round starting one interval
    /// (± 20% jitter) after the last one started; a failing peer is retried after an
    /// exponentially longer wait (at most 32×).
    private func syncLoop() async {
        var schedule = SyncSchedule(intervalSeconds: configuration.intervalSeconds)
        var generator = SystemRandomNumberGenerator()
        let clock = ContinuousClock()
        let origin = clock.now
        func elapsed() -> Double { (clock.now - origin).seconds }
        while !Task.isCancelled {
            refreshDirectory()
            let peers = peersToSync()
            logger.trace("sync round", metadata: ["peers": "\(peers.map(\.replica))"])
            for peer in peers where schedule.isDue(peer.replica, at: elapsed()) {
                if Task.isCancelled { return }
                let started = elapsed()
                _ = await sync(with: peer)
                schedule.attempted(
                    peer.replica, failures: failures[peer.replica] ?? 0, startedAt: started,
                    jitter: Double.random(in: 0.8...1.2, using: &generator))
            }
            // What the round brought (a withdrawal, a removal) takes effect after each
            // session (see afterSession); expiry needs no round at all.
            try? await Task.sleep(for: .seconds(schedule.nextWait(at: elapsed())))
        }
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) / 1e18
    }
}
