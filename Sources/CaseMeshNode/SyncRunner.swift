public import CaseMeshCRDT
import CaseMeshNet
public import CaseMeshStore
public import CaseMeshSync

/// Runs one sync session against the local store over any message transport:
/// performs the ``SyncSession``'s actions (send, read a page of the log, apply a
/// pulled batch durably) until it finishes or fails.
///
/// The transport is two things: the messages arriving from the peer, in order, and
/// a way to send one. The mutual-TLS connection is one such transport; the tests'
/// in-memory pipe is another.
public struct SyncRunner: Sendable {
    public let store: CaseStore
    /// Pages in flight before the server waits for an ack.
    public var window = 2
    /// A page's soft bounds.
    public var pageChanges = 16_384
    public var pageBytes = 4 << 20
    /// Called after each pulled batch is applied, with the totals so far.
    public var progress: (@Sendable (SyncSummary) -> Void)?
    /// How this node signs its changes and checks others' (`nil`: neither, for
    /// in-memory tests and the simulator, which are about merging).
    public var authentication: Authentication?

    /// Signing and verification of changes (property 6 of the Architecture article in CaseMeshNode.docc).
    public struct Authentication: Sendable {
        /// Signs a seal's message with this node's certificate key.
        public var sign: SealSigner
        /// Verifies a node's certificate (consortium CA, CRL, the replica ID it names)
        /// and returns its raw P-256 public key.
        public var verifyCertificate: @Sendable (ReplicaID, [UInt8]) async throws -> [UInt8]

        public init(
            sign: @escaping SealSigner,
            verifyCertificate: @escaping @Sendable (ReplicaID, [UInt8]) async throws -> [UInt8]
        ) {
            self.sign = sign
            self.verifyCertificate = verifyCertificate
        }
    }

    /// The most refused changes one session accepts before it ends.
    public static let maximumRefusedPerSession = 10_000

    public init(store: CaseStore) {
        self.store = store
    }

    /// What one run did.
    public struct Outcome: Sendable {
        public var summary: SyncSummary
        public var error: SyncError?
        /// Changes the peer sent that were refused (schema, clock, bytes).
        public var refused: [String]
    }

    /// Records how a session ended: the outcome, and how far the peer now holds this
    /// node's log (which decides when a withdrawn case may be purged).
    private func record(_ outcome: Outcome, peer: ReplicaID, sent: [(nextCursor: UInt64, own: OwnChangesSent)])
        -> Outcome
    {
        // Refused changes (a clock ahead, a seal that does not verify) show in
        // `casemesh peers` until a clean sync.
        let problem = outcome.refused.first.map { "\(outcome.refused.count) changes refused; first: \($0)" }
        try? store.recordSyncOutcome(peer: peer, error: outcome.error?.description, problem: problem)
        // The pages the peer acknowledged: what they carried of this node's own is out.
        var delivered = OwnChangesSent()
        for page in sent where page.nextCursor <= outcome.summary.peerHolds { delivered.formUnion(page.own) }
        try? store.recordDelivered(delivered)
        return outcome
    }

    /// Runs a session with `peer` (as its certificate names it) to its end.
    ///
    /// - Parameters:
    ///   - inbound: the peer's messages; its end means the connection closed.
    ///   - send: sends one message to the peer.
    public func run<Inbound: AsyncSequence & Sendable>(
        peer: ReplicaID, inbound: Inbound, send: @Sendable (SyncMessage) async throws -> Void
    ) async -> Outcome where Inbound.Element == SyncMessage {
        var refused: [String] = []
        var session: SyncSession
        do {
            let cursor = try store.pullCursor(for: peer)
            session = SyncSession(
                configuration: .init(schemaVersion: UInt64(store.schema.version), window: window),
                local: .init(replica: store.replicaID, logIdentity: try store.logIdentity()), peer: peer,
                pullFrom: .init(logIdentity: cursor.logIdentity, cursor: cursor.cursor))
        } catch {
            return Outcome(summary: SyncSummary(), error: .storeFailure(error.message), refused: [])
        }
        // The pages sent that carried this node's own changes, until the peer acks them.
        var ownSent: [(nextCursor: UInt64, own: OwnChangesSent)] = []
        func end(_ outcome: Outcome) -> Outcome { record(outcome, peer: peer, sent: ownSent) }
        let memo = LogPageMemo()
        // Once a change is held back, the stored cursor stays before it for the session.
        var holding = false
        // This node's changes leave it sealed; a certificate goes once per connection.
        var certificatesSent: Set<ReplicaID> = []
        if let authentication {
            do {
                try store.sealOwnChanges(sign: authentication.sign)
            } catch {
                return Outcome(summary: SyncSummary(), error: .storeFailure(error.message), refused: [])
            }
        }
        var actions = session.start()
        var iterator = inbound.makeAsyncIterator()
        while true {
            while !actions.isEmpty {
                let action = actions.removeFirst()
                do {
                    switch action {
                    case .send(let message):
                        try await send(message)
                    case .loadPage(let cursor):
                        // Edits made beside the running node since its last seal are
                        // sealed before a peer can pull them (and a page never carries
                        // one of its own unsealed: it ends before it).
                        if let authentication { try store.sealOwnChanges(sign: authentication.sign) }
                        let page = try store.logPage(
                            from: cursor, for: peer.institution, maxChanges: pageChanges, maxBytes: pageBytes,
                            memo: memo, sealedOnly: authentication != nil)
                        if !page.ownChangesSent.isEmpty { ownSent.append((page.nextCursor, page.ownChangesSent)) }
                        let certificates = page.certificates.filter { !certificatesSent.contains($0.key) }
                        certificatesSent.formUnion(certificates.keys)
                        actions += session.pageLoaded(
                            .init(
                                changes: page.changes, nextCursor: page.nextCursor, isFinal: page.isFinal,
                                leaves: page.leaves, seals: page.seals, certificates: certificates))
                    case .applyBatch(let batch):
                        var seals: PulledSeals?
                        if let authentication {
                            for (signer, certificate) in batch.certificates.sorted(by: { $0.key < $1.key })
                            where !(try store.knowsSigner(signer, certificate: certificate)) {
                                // A certificate that does not verify is not recorded: the
                                // seals it would check are refused, the rest goes on.
                                do {
                                    let key = try await authentication.verifyCertificate(signer, certificate)
                                    try store.trustSigner(signer, publicKey: key, certificate: certificate)
                                } catch let error as StoreError {
                                    throw error
                                } catch {
                                    refused.append("certificate of \(signer) refused: \(error)")
                                }
                            }
                            // Signers already trusted are checked again against the
                            // current CRL on every batch (a laptop revoked at noon
                            // writes nothing through this node after noon).
                            var distrusted: [ReplicaID: String] = [:]
                            let known = try store.signerCertificates(Set(batch.seals.map(\.origin)))
                            for (signer, certificate) in known.sorted(by: { $0.key < $1.key }) {
                                do {
                                    _ = try await authentication.verifyCertificate(signer, certificate)
                                } catch {
                                    distrusted[signer] = "\(error)"
                                    refused.append("certificate of \(signer) no longer verifies: \(error)")
                                }
                            }
                            seals = PulledSeals(
                                leaves: batch.leaves, seals: batch.seals, certificates: batch.certificates,
                                distrusted: distrusted)
                        }
                        let report = try store.applyPulled(
                            batch.changes, from: peer, logIdentity: batch.logIdentity, nextCursor: batch.nextCursor,
                            checkpoint: batch.isFinal, authentication: seals, holdCursor: holding)
                        holding = holding || report.cursorHeld
                        refused += batch.refused.map { "\($0.label): \($0.reason)" }
                        refused += report.undecodable + report.rejected.map { "\($0.caseID) \($0.dot): \($0.reason)" }
                        // A peer that keeps sending what this node refuses is cut off
                        // (its changes stay refused; the rest came through).
                        if refused.count > Self.maximumRefusedPerSession {
                            actions = session.connectionLost(
                                "\(peer) sent more than \(Self.maximumRefusedPerSession) refused changes; "
                                    + "this node stops the session (see 'casemesh quarantine')")
                            continue
                        }
                        actions += session.batchApplied(
                            report.applied, durableCursor: report.cursorHeld ? report.durableCursor : nil)
                        progress?(session.summary)
                    case .finish(let summary):
                        return end(Outcome(summary: summary, error: nil, refused: refused))
                    case .fail(let error):
                        return end(Outcome(summary: session.summary, error: error, refused: refused))
                    }
                } catch let error as StoreError {
                    // An ended session keeps the actions it had left (its own failure).
                    let lost = session.connectionLost("local store: \(error.message)")
                    if !lost.isEmpty { actions = lost }
                } catch {
                    let lost = session.connectionLost(
                        NetError.describing(error, address: peer.rawValue, listening: false).message)
                    if !lost.isEmpty { actions = lost }
                }
            }
            // A session that ended on an action that could not be performed (a refusal
            // that could not be sent to a peer that reset the connection) has nothing
            // left to do: stop, never wait on a stream that has ended.
            if session.isEnded {
                return end(
                    Outcome(summary: session.summary, error: .connectionLost("the session ended"), refused: refused))
            }
            do {
                guard let message = try await iterator.next() else {
                    actions = session.connectionLost("the peer closed the connection")
                    continue
                }
                actions = session.receive(message)
            } catch {
                actions = session.connectionLost(
                    NetError.describing(error, address: peer.rawValue, listening: false).message)
            }
        }
    }
}
