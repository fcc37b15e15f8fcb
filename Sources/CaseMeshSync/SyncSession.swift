public import CaseMeshCRDT

/// The sync protocol's state machine, the same on both sides of a connection.
///
/// Sans-I/O: it never touches a socket or a store. The driver feeds it what
/// happened (``start()``, ``receive(_:)``, ``pageLoaded(_:)``, ``batchApplied(_:)``)
/// and performs the ``Action``s it returns, in order.
///
/// Each side both pulls from its peer and serves its peer's pull, concurrently over
/// the one connection:
/// - the puller sends `pull(cursor)`, applies each `batch` durably (with the new
///   cursor, in one transaction), then acks it; after the final batch it sends `done`;
/// - the server answers a pull with pages of its log, at most ``Configuration/window``
///   unacknowledged at a time (backpressure: memory stays bounded whatever the log's
///   size), and is finished when the final page is acked;
/// - the session ends when this side has pulled everything and the peer has said
///   `done`.
///
/// - Important: The peer's replica ID comes from its certificate
///   (``init(configuration:local:peer:pullFrom:)``); a `hello` that claims another is
///   refused.
public struct SyncSession: Sendable {
    /// What the driver must do next.
    public enum Action: Hashable, Sendable {
        /// Send this message to the peer.
        case send(SyncMessage)
        /// Read the next page of the local log for the peer, from `cursor`, and call
        /// ``pageLoaded(_:)`` with it. `fromStart` asks for everything because the
        /// peer's cursor refers to another log.
        case loadPage(cursor: UInt64)
        /// Apply these changes durably together with the new pull cursor, then call
        /// ``batchApplied(_:)``.
        case applyBatch(SyncMessage.Batch)
        /// The sync is complete; close the connection.
        case finish(SyncSummary)
        /// The sync failed; close the connection (a `refusal` was sent when useful).
        case fail(SyncError)
    }

    public struct Configuration: Hashable, Sendable {
        public var protocolVersion: UInt64 = 2
        public var schemaVersion: UInt64
        /// Pages in flight before the server waits for an ack.
        public var window = 2

        public init(schemaVersion: UInt64, window: Int = 2) {
            self.schemaVersion = schemaVersion
            self.window = max(1, window)
        }
    }

    /// This side's identity.
    public struct Local: Hashable, Sendable {
        public var replica: ReplicaID
        public var logIdentity: String

        public init(replica: ReplicaID, logIdentity: String) {
            self.replica = replica
            self.logIdentity = logIdentity
        }
    }

    /// Where this side's pull of the peer's log starts.
    public struct PullCursor: Hashable, Sendable {
        public var logIdentity: String
        public var cursor: UInt64

        public init(logIdentity: String, cursor: UInt64) {
            self.logIdentity = logIdentity
            self.cursor = max(1, cursor)
        }

        public static let start = PullCursor(logIdentity: "", cursor: 1)
    }

    /// A page of the local log as the driver read it for the peer.
    public struct Page: Hashable, Sendable {
        public var changes: [Change]
        public var nextCursor: UInt64
        public var isFinal: Bool
        /// The seals of the changes and their signers' certificates (see ``Seal``).
        public var leaves: [SealLeaf?]
        public var seals: [Seal]
        public var certificates: [ReplicaID: [UInt8]]

        public init(
            changes: [Change], nextCursor: UInt64, isFinal: Bool, leaves: [SealLeaf?] = [], seals: [Seal] = [],
            certificates: [ReplicaID: [UInt8]] = [:]
        ) {
            self.changes = changes
            self.nextCursor = nextCursor
            self.isFinal = isFinal
            self.leaves = leaves
            self.seals = seals
            self.certificates = certificates
        }
    }

    private enum Handshake: Hashable, Sendable {
        case waiting
        case done
    }

    private enum Puller: Hashable, Sendable {
        case notStarted
        /// Waiting for batches; `applying` while the driver applies the head of `queue`.
        case pulling(applying: Bool)
        case finished
    }

    private enum Server: Hashable, Sendable {
        case idle
        /// Serving a pull: `next` is where the next page starts.
        case serving(next: UInt64, loading: Bool, inFlight: Int, sentFinal: Bool)
        case finished
    }

    public let configuration: Configuration
    public let local: Local
    /// The peer as its certificate names it.
    public let peer: ReplicaID
    private var handshake = Handshake.waiting
    private var puller = Puller.notStarted
    private var server = Server.idle
    private var peerDone = false
    private var pullCursor: PullCursor
    private var queue: [SyncMessage.Batch] = []
    private var ended = false
    public private(set) var summary = SyncSummary()

    public init(configuration: Configuration, local: Local, peer: ReplicaID, pullFrom cursor: PullCursor) {
        self.configuration = configuration
        self.local = local
        self.peer = peer
        pullCursor = cursor
    }

    /// Whether the session has finished or failed.
    public var isEnded: Bool { ended }

    /// Opens the session: says hello.
    public mutating func start() -> [Action] {
        [
            .send(
                .hello(
                    .init(
                        protocolVersion: configuration.protocolVersion, schemaVersion: configuration.schemaVersion,
                        replica: local.replica, logIdentity: local.logIdentity)))
        ]
    }

    /// Handles a message from the peer.
    public mutating func receive(_ message: SyncMessage) -> [Action] {
        guard !ended else { return [] }
        switch (handshake, message) {
        case (.waiting, .hello(let hello)):
            return handleHello(hello)
        case (.waiting, _):
            return fail(.protocolViolation("expected hello first"))
        case (.done, .hello):
            return fail(.protocolViolation("hello sent twice"))
        case (.done, .pull(let pull)):
            guard case .idle = server else { return fail(.protocolViolation("pull while a pull is being served")) }
            let start = pull.logIdentity == local.logIdentity ? max(1, pull.cursor) : 1
            // The peer holds (durably) what it may receive of this log before its cursor.
            summary.peerHolds = max(summary.peerHolds, start)
            server = .serving(next: start, loading: true, inFlight: 0, sentFinal: false)
            return [.loadPage(cursor: start)]
        case (.done, .batch(let batch)):
            return handleBatch(batch)
        case (.done, .ack(let ack)):
            return handleAck(ack)
        case (.done, .done):
            guard !peerDone else { return fail(.protocolViolation("done sent twice")) }
            peerDone = true
            return finishIfComplete()
        case (.done, .refusal(let refusal)):
            ended = true
            return [.fail(.refusedByPeer(refusal.reason))]
        }
    }

    private mutating func handleHello(_ hello: SyncMessage.Hello) -> [Action] {
        guard hello.protocolVersion == configuration.protocolVersion else {
            let older = hello.protocolVersion < configuration.protocolVersion ? "peer" : "this node"
            return refuse(
                .incompatible(
                    "the peer speaks sync protocol \(hello.protocolVersion), this node \(configuration.protocolVersion): "
                        + "upgrade casemesh on the \(older)"))
        }
        // Case schema versions may differ (institutions upgrade on different days):
        // a node holds what a newer schema writes until it upgrades (CaseStore+Upgrade).
        summary.peerSchemaVersion = hello.schemaVersion
        guard hello.replica == peer else {
            return refuse(.identityMismatch(claimed: hello.replica, certified: peer))
        }
        handshake = .done
        summary.peerLogIdentity = hello.logIdentity
        if pullCursor.logIdentity != hello.logIdentity {
            // The cursor was into another log (or there was none): start over; duplicates are harmless.
            pullCursor = PullCursor(logIdentity: hello.logIdentity, cursor: 1)
        }
        puller = .pulling(applying: false)
        return [.send(.pull(.init(logIdentity: pullCursor.logIdentity, cursor: pullCursor.cursor)))]
    }

    private mutating func handleBatch(_ batch: SyncMessage.Batch) -> [Action] {
        guard case .pulling(let applying) = puller else { return fail(.protocolViolation("batch without a pull")) }
        guard batch.logIdentity == pullCursor.logIdentity else {
            return fail(.protocolViolation("batch from another log than the hello named"))
        }
        guard queue.count < configuration.window + 1 else {
            return fail(.protocolViolation("peer sent more batches than the window allows"))
        }
        queue.append(batch)
        guard !applying else { return [] }
        puller = .pulling(applying: true)
        return [.applyBatch(batch)]
    }

    /// The driver applied the batch at the head of the queue durably.
    ///
    /// - Parameter applied: how many of its changes were new here.
    ///   - durableCursor: where the stored cursor stands when the driver kept it before
    ///     the batch's end (a change refused only for now must be fetched again); the
    ///     ack tells the peer that, not more.
    public mutating func batchApplied(_ applied: Int, durableCursor: UInt64? = nil) -> [Action] {
        guard !ended, case .pulling(applying: true) = puller, !queue.isEmpty else { return [] }
        let batch = queue.removeFirst()
        pullCursor.cursor = batch.nextCursor
        summary.batchesReceived += 1
        summary.changesReceived += batch.changes.count
        summary.changesApplied += applied
        var actions: [Action] = [.send(.ack(.init(cursor: durableCursor ?? batch.nextCursor)))]
        if batch.isFinal {
            puller = .finished
            actions.append(.send(.done))
            return actions + finishIfComplete()
        }
        if let next = queue.first {
            actions.append(.applyBatch(next))
        } else {
            puller = .pulling(applying: false)
        }
        return actions
    }

    /// The driver read the page a ``Action/loadPage(cursor:)`` asked for.
    public mutating func pageLoaded(_ page: Page) -> [Action] {
        guard !ended, case .serving(_, true, let inFlight, false) = server else { return [] }
        summary.batchesSent += 1
        summary.changesSent += page.changes.count
        let inFlightNow = inFlight + 1
        var actions: [Action] = [
            .send(
                .batch(
                    .init(
                        logIdentity: local.logIdentity, changes: page.changes, nextCursor: page.nextCursor,
                        isFinal: page.isFinal, leaves: page.leaves, seals: page.seals,
                        certificates: page.certificates)))
        ]
        if page.isFinal {
            server = .serving(next: page.nextCursor, loading: false, inFlight: inFlightNow, sentFinal: true)
        } else if inFlightNow < configuration.window {
            server = .serving(next: page.nextCursor, loading: true, inFlight: inFlightNow, sentFinal: false)
            actions.append(.loadPage(cursor: page.nextCursor))
        } else {
            server = .serving(next: page.nextCursor, loading: false, inFlight: inFlightNow, sentFinal: false)
        }
        return actions
    }

    private mutating func handleAck(_ ack: SyncMessage.Ack) -> [Action] {
        guard case .serving(let next, let loading, let inFlight, let sentFinal) = server, inFlight > 0 else {
            return fail(.protocolViolation("ack for nothing sent"))
        }
        let remaining = inFlight - 1
        // An ack says the peer applied everything before its cursor durably; a cursor
        // beyond what was sent is the peer's mistake, and claims nothing here.
        if ack.cursor <= next { summary.peerHolds = max(summary.peerHolds, ack.cursor) }
        if sentFinal && remaining == 0 {
            server = .finished
            return finishIfComplete()
        }
        if !sentFinal && !loading {
            server = .serving(next: next, loading: true, inFlight: remaining, sentFinal: false)
            return [.loadPage(cursor: next)]
        }
        server = .serving(next: next, loading: loading, inFlight: remaining, sentFinal: sentFinal)
        return []
    }

    private mutating func finishIfComplete() -> [Action] {
        guard case .finished = puller, peerDone else { return [] }
        // The peer has pulled all it wanted; whatever it has not acked it did not need.
        ended = true
        return [.finish(summary)]
    }

    /// The connection broke or timed out.
    public mutating func connectionLost(_ reason: String) -> [Action] {
        guard !ended else { return [] }
        ended = true
        return [.fail(.connectionLost(reason))]
    }

    private mutating func refuse(_ error: SyncError) -> [Action] {
        ended = true
        return [.send(.refusal(.init(reason: error.description))), .fail(error)]
    }

    private mutating func fail(_ error: SyncError) -> [Action] {
        refuse(error)
    }

    /// The pull cursor as it stands (durable once the batch that moved it is applied).
    public var currentPullCursor: PullCursor { pullCursor }
}

/// What one sync session moved.
public struct SyncSummary: Hashable, Sendable {
    public var peerLogIdentity = ""
    /// The case schema version the peer follows (0 until its hello).
    public var peerSchemaVersion: UInt64 = 0
    public var batchesReceived = 0
    public var changesReceived = 0
    public var changesApplied = 0
    public var batchesSent = 0
    public var changesSent = 0
    /// How far the peer is known to hold this node's log (an arrival number: it has
    /// applied what it may receive of everything before it); 0 when unknown.
    public var peerHolds: UInt64 = 0

    public init() {}
}

/// Why a sync session ended without finishing.
public enum SyncError: Error, Hashable, Sendable, CustomStringConvertible {
    case protocolViolation(String)
    case incompatible(String)
    case identityMismatch(claimed: ReplicaID, certified: ReplicaID)
    case refusedByPeer(String)
    case connectionLost(String)
    /// The peer could not be reached or authenticated; no session started.
    case unreachable(String)
    case storeFailure(String)

    public var description: String {
        switch self {
        case .protocolViolation(let reason): "protocol violation: \(reason)"
        case .incompatible(let reason): "incompatible peer: \(reason)"
        case .identityMismatch(let claimed, let certified):
            "peer claims to be \(claimed) but its certificate says \(certified)"
        case .refusedByPeer(let reason): "refused by peer: \(reason)"
        case .connectionLost(let reason): "connection lost: \(reason)"
        case .unreachable(let reason): "cannot connect: \(reason)"
        case .storeFailure(let reason): "store failure: \(reason)"
        }
    }
}
