public import CaseMeshCRDT

/// One message of the CaseMesh sync protocol (version 2: batches carry seals).
///
/// Every message travels in one frame: a 4-byte big-endian length, then the
/// message type byte and its fields in CaseMesh's binary encoding (LEB128 varints,
/// length-prefixed strings). See the sync protocol article for the message flow.
public enum SyncMessage: Hashable, Sendable {
    /// The first message each side sends.
    case hello(Hello)
    /// Asks the peer for the changes of its log from a cursor on.
    case pull(Pull)
    /// A page of the sender's change log, filtered to what the receiver may see.
    case batch(Batch)
    /// The receiver has applied everything up to `cursor` durably.
    case ack(Ack)
    /// The sender has finished pulling; it will send nothing more but acks.
    case done
    /// The sender refuses to go on; the connection closes after it.
    case refusal(Refusal)

    public struct Hello: Hashable, Sendable {
        public var protocolVersion: UInt64
        public var schemaVersion: UInt64
        /// The sender's replica ID. Checked against its certificate, never trusted alone.
        public var replica: ReplicaID
        /// The identity of the sender's change log.
        public var logIdentity: String

        public init(protocolVersion: UInt64, schemaVersion: UInt64, replica: ReplicaID, logIdentity: String) {
            self.protocolVersion = protocolVersion
            self.schemaVersion = schemaVersion
            self.replica = replica
            self.logIdentity = logIdentity
        }
    }

    public struct Pull: Hashable, Sendable {
        /// The identity of the peer's log the cursor refers to ("" when none).
        public var logIdentity: String
        /// The first arrival number wanted.
        public var cursor: UInt64

        public init(logIdentity: String, cursor: UInt64) {
            self.logIdentity = logIdentity
            self.cursor = cursor
        }
    }

    public struct Batch: Hashable, Sendable {
        /// The identity of the sender's log.
        public var logIdentity: String
        /// The changes, in the sender's arrival order.
        public var changes: [Change]
        /// Where the next pull resumes once this batch is applied.
        public var nextCursor: UInt64
        /// Whether this batch reaches the end of the sender's log.
        public var isFinal: Bool
        /// For each change, where it sits in ``seals`` (`nil`: not sealed).
        public var leaves: [SealLeaf?]
        /// The origins' seals that authenticate the changes.
        public var seals: [Seal]
        /// The certificates of the seals' signers (DER), for receivers that do not know them.
        public var certificates: [ReplicaID: [UInt8]]
        /// On the receiving side: changes whose bytes were read but that are not valid
        /// changes (an identifier that does not parse, a structure the change rules
        /// refuse). They are refused one by one; the rest of the batch applies. Never
        /// sent: the sender's side is always empty.
        public var refused: [RefusedChange]

        public init(
            logIdentity: String, changes: [Change], nextCursor: UInt64, isFinal: Bool, leaves: [SealLeaf?] = [],
            seals: [Seal] = [], certificates: [ReplicaID: [UInt8]] = [:], refused: [RefusedChange] = []
        ) {
            self.refused = refused
            self.logIdentity = logIdentity
            self.changes = changes
            self.nextCursor = nextCursor
            self.isFinal = isFinal
            self.leaves = leaves
            self.seals = seals
            self.certificates = certificates
        }
    }

    public struct Ack: Hashable, Sendable {
        public var cursor: UInt64

        public init(cursor: UInt64) { self.cursor = cursor }
    }

    public struct Refusal: Hashable, Sendable {
        public var reason: String

        public init(reason: String) { self.reason = reason }
    }
}
