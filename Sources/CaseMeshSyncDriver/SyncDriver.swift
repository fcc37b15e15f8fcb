public import CaseMeshCRDT
public import CaseMeshStore
public import CaseMeshSync

/// One side of a sync session against the local store, as a step function: the
/// production driver, used by the node over mutual TLS (through ``SyncRunner``), by
/// the tests' in-memory pipes and by the simulator, which steps two drivers message
/// by message.
///
/// It performs the ``SyncSession``'s store actions itself (seal this node's own
/// changes, read a page of the log for the peer, verify signers and apply a pulled
/// batch durably) and hands the caller only what crosses the connection:
/// ``next()`` returns a message to send, asks for the peer's next message, or
/// reports how the session ended. The caller reports what happened on its side
/// with ``receive(_:)`` and ``connectionLost(_:)``.
public struct SyncDriver {
    /// What the caller must do next.
    public enum Step: Sendable {
        /// Send this message to the peer, then call ``SyncDriver/next()`` again (or
        /// ``SyncDriver/connectionLost(_:)`` if it could not be sent).
        case send(SyncMessage)
        /// Wait for the peer's next message and pass it to ``SyncDriver/receive(_:)``
        /// (or its absence to ``SyncDriver/connectionLost(_:)``).
        case awaitMessage
        /// The session is over; the outcome is recorded in the store.
        case ended(Outcome)
    }

    /// What one session did.
    public struct Outcome: Sendable {
        public var summary: SyncSummary
        public var error: SyncError?
        /// Changes the peer sent that were refused (schema, clock, bytes, seals).
        public var refused: [String]

        public init(summary: SyncSummary, error: SyncError?, refused: [String]) {
            self.summary = summary
            self.error = error
            self.refused = refused
        }
    }

    /// Signing and verification of changes (property 6 of the Architecture article in CaseMeshNode.docc).
    public struct Authentication: Sendable {
        /// Signs a seal's message with this node's certificate key.
        public var sign: SealSigner
        /// Verifies a node's certificate (consortium CA, CRL, the replica ID it names)
        /// and returns its raw P-256 public key.
        public var verifyCertificate: SignerTrust.Verify

        public init(sign: @escaping SealSigner, verifyCertificate: @escaping SignerTrust.Verify) {
            self.sign = sign
            self.verifyCertificate = verifyCertificate
        }
    }

    /// How a session reads and applies.
    public struct Settings: Sendable {
        /// Pages in flight before the server waits for an ack.
        public var window = 2
        /// A page's soft bounds.
        public var pageChanges = 16_384
        public var pageBytes = 4 << 20
        /// How this node signs its changes and checks others' (`nil`: neither, for
        /// in-memory tests of merging alone).
        public var authentication: Authentication?
        /// Called after each pulled batch is applied, with the totals so far.
        public var progress: (@Sendable (SyncSummary) -> Void)?
        /// Describes a transport error for the outcome (the node names addresses).
        public var describe: @Sendable (any Error) -> String = { "\($0)" }

        public init() {}
    }

    /// The most refused changes one session accepts before it ends.
    public static let maximumRefusedPerSession = 10_000

    public let store: CaseStore
    public let peer: ReplicaID
    private let settings: Settings
    private var session: SyncSession
    private var actions: [SyncSession.Action] = []
    private var outcome: Outcome?
    private var refused: [String] = []
    /// The pages sent that carried this node's own changes, until the peer acks them.
    private var ownSent: [(nextCursor: UInt64, own: OwnChangesSent)] = []
    private let memo = LogPageMemo()
    /// Once a change is held back, the stored cursor stays before it for the session.
    private var holding = false
    /// A certificate goes once per connection.
    private var certificatesSent: Set<ReplicaID> = []

    /// Prepares a session with `peer` (as its certificate names it): reads where the
    /// last pull of its log stopped and seals this node's own changes. A store that
    /// cannot do either ends the session at once (``next()`` reports it).
    public init(store: CaseStore, peer: ReplicaID, settings: Settings) {
        self.store = store
        self.peer = peer
        self.settings = settings
        let configuration = SyncSession.Configuration(
            schemaVersion: UInt64(store.schema.version), window: settings.window)
        do {
            let cursor = try store.pullCursor(for: peer)
            session = SyncSession(
                configuration: configuration,
                local: .init(replica: store.replicaID, logIdentity: try store.logIdentity()),
                peer: peer, pullFrom: .init(logIdentity: cursor.logIdentity, cursor: cursor.cursor))
            if let authentication = settings.authentication { try store.sealOwnChanges(sign: authentication.sign) }
            actions = session.start()
        } catch {
            session = SyncSession(
                configuration: configuration, local: .init(replica: store.replicaID, logIdentity: ""), peer: peer,
                pullFrom: .start)
            outcome = Outcome(summary: SyncSummary(), error: .storeFailure(error.message), refused: [])
        }
    }

    /// Whether the session is over (``next()`` returns ``Step/ended(_:)``).
    public var isEnded: Bool { outcome != nil }

    /// The totals so far.
    public var summary: SyncSummary { session.summary }

    /// Performs the session's store work until there is a message to send, a message
    /// to wait for, or an end.
    public mutating func next() async -> Step {
        while outcome == nil {
            guard !actions.isEmpty else {
                // A session that ended on an action that could not be performed (a
                // refusal that could not be sent to a peer that reset the connection)
                // has nothing left to do: stop, never wait on a stream that has ended.
                if session.isEnded {
                    end(
                        Outcome(summary: session.summary, error: .connectionLost("the session ended"), refused: refused)
                    )
                    break
                }
                return .awaitMessage
            }
            let action = actions.removeFirst()
            do {
                switch action {
                case .send(let message):
                    return .send(message)
                case .loadPage(let cursor):
                    try loadPage(from: cursor)
                case .applyBatch(let batch):
                    try await apply(batch)
                case .finish(let summary):
                    end(Outcome(summary: summary, error: nil, refused: refused))
                case .fail(let error):
                    end(Outcome(summary: session.summary, error: error, refused: refused))
                }
            } catch {
                // An ended session keeps the actions it had left (its own failure).
                connectionLost("local store: \(error.message)")
            }
        }
        return .ended(outcome ?? Outcome(summary: session.summary, error: nil, refused: refused))
    }

    /// The peer's next message arrived.
    public mutating func receive(_ message: SyncMessage) {
        guard outcome == nil else { return }
        actions += session.receive(message)
    }

    /// The connection failed (a message could not be sent, the peer closed it, the
    /// transport reported an error), or this side gives up.
    public mutating func connectionLost(_ reason: String) {
        let lost = session.connectionLost(reason)
        if !lost.isEmpty { actions = lost }
    }

    /// Reads the next page of this log for the peer.
    private mutating func loadPage(from cursor: UInt64) throws(StoreError) {
        let authentication = settings.authentication
        // Edits made beside the running node since its last seal are sealed before
        // a peer can pull them (and a page never carries one of its own unsealed: it
        // ends before it).
        if let authentication { try store.sealOwnChanges(sign: authentication.sign) }
        let page = try store.logPage(
            from: cursor, for: peer.institution, maxChanges: settings.pageChanges, maxBytes: settings.pageBytes,
            memo: memo, sealedOnly: authentication != nil)
        if !page.ownChangesSent.isEmpty { ownSent.append((page.nextCursor, page.ownChangesSent)) }
        let certificates = page.certificates.filter { !certificatesSent.contains($0.key) }
        certificatesSent.formUnion(certificates.keys)
        actions += session.pageLoaded(
            .init(
                changes: page.changes, nextCursor: page.nextCursor, isFinal: page.isFinal, leaves: page.leaves,
                seals: page.seals, certificates: certificates))
    }

    /// Verifies the batch's signers and applies it durably with the new cursor.
    private mutating func apply(_ batch: SyncMessage.Batch) async throws(StoreError) {
        var seals: PulledSeals?
        if let authentication = settings.authentication {
            let verdict = try await SignerTrust.check(
                store: store, offered: batch.certificates, signers: Set(batch.seals.map(\.origin)),
                verify: authentication.verifyCertificate)
            refused += verdict.refused
            seals = PulledSeals(
                leaves: batch.leaves, seals: batch.seals, certificates: batch.certificates,
                distrusted: verdict.distrusted)
        }
        let report = try store.applyPulled(
            batch.changes, from: peer, logIdentity: batch.logIdentity, nextCursor: batch.nextCursor,
            checkpoint: batch.isFinal, authentication: seals, holdCursor: holding)
        holding = holding || report.cursorHeld
        refused += batch.refused.map { "\($0.label): \($0.reason)" }
        refused += report.undecodable + report.rejected.map { "\($0.caseID) \($0.dot): \($0.reason)" }
        // A peer that keeps sending what this node refuses is cut off (its changes
        // stay refused; the rest came through).
        if refused.count > Self.maximumRefusedPerSession {
            actions = session.connectionLost(
                "\(peer) sent more than \(Self.maximumRefusedPerSession) refused changes; "
                    + "this node stops the session (see 'casemesh quarantine')")
            return
        }
        actions += session.batchApplied(report.applied, durableCursor: report.cursorHeld ? report.durableCursor : nil)
        settings.progress?(session.summary)
    }

    /// Records how the session ended: the outcome, and how far the peer now holds
    /// this node's log (which decides when a withdrawn case may be purged).
    private mutating func end(_ ended: Outcome) {
        // Refused changes (a clock ahead, a seal that does not verify) show in
        // `casemesh peers` until a clean sync.
        let problem = ended.refused.first.map { "\(ended.refused.count) changes refused; first: \($0)" }
        try? store.recordSyncOutcome(peer: peer, error: ended.error?.description, problem: problem)
        // The pages the peer acknowledged: what they carried of this node's own is out.
        var delivered = OwnChangesSent()
        for page in ownSent where page.nextCursor <= ended.summary.peerHolds { delivered.formUnion(page.own) }
        try? store.recordDelivered(delivered)
        outcome = ended
        actions = []
    }
}
