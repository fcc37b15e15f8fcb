public import CaseMeshCRDT

/// What happened to a batch of received changes.
public struct ApplyReport: Hashable, Sendable {
    /// One refused change and why.
    public struct Rejection: Hashable, Sendable {
        public var caseID: CaseID
        public var dot: Dot
        public var reason: String

        public init(caseID: CaseID, dot: Dot, reason: String) {
            self.caseID = caseID
            self.dot = dot
            self.reason = reason
        }
    }

    /// Changes applied now, including earlier pending ones they unblocked.
    public var applied = 0
    /// Changes already held.
    public var duplicates = 0
    /// Changes held back until their causal dependencies arrive.
    public var deferred = 0
    /// Changes refused (schema, clock, structure); the rest of the batch still applies.
    public var rejected: [Rejection] = []
    /// Reasons for received bytes that did not decode as a change at all.
    public var undecodable: [String] = []
    /// The operations of the applied changes.
    public var appliedOperations = 0
    /// Changes of cases purged here that did not bring this institution back: dropped.
    public var droppedPurged = 0
    /// Purged cases that a received change brought this institution back to: their
    /// history is applied again.
    public var restored: [CaseID] = []
    /// Departure notices received: changes that ended this institution's right to a
    /// case, acted on without their history (a case not held here is left alone).
    public var departures = 0
    /// Changes refused only for now (a timestamp too far ahead of this node's clock):
    /// they must be received again later, so the pull cursor is not moved past them.
    public var heldBack = 0
    /// Applied changes with operations on fields of a newer case schema than this
    /// node's: those operations are held until it upgrades (the rest merged).
    public var heldForNewerSchema = 0
    /// For a pulled batch: whether the stored pull cursor was kept where it was (this
    /// batch, or an earlier one of the session, held a change back), and where it is.
    public var cursorHeld = false
    public var durableCursor: UInt64 = 0

    public init() {}

    mutating func add(_ other: ApplyReport) {
        applied += other.applied
        duplicates += other.duplicates
        deferred = other.deferred
        rejected += other.rejected
        undecodable += other.undecodable
        appliedOperations += other.appliedOperations
        droppedPurged += other.droppedPurged
        restored += other.restored
        departures += other.departures
        heldBack += other.heldBack
        heldForNewerSchema += other.heldForNewerSchema
    }
}
