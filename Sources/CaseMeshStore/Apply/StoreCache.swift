import CaseMeshCRDT
import Foundation

/// Decoded state kept between write transactions, so a long apply (a sync of a
/// million changes) does not re-read and re-decode the same cases batch after batch.
///
/// - Important: Valid only while no other connection has written: every write
///   transaction compares SQLite's `PRAGMA data_version` with the value seen last and
///   drops everything when it moved; a transaction that fails drops everything too.
///   Accessed only from inside write transactions, which GRDB serializes; the lock
///   makes that explicit.
final class StoreCache: @unchecked Sendable {
    struct StateKey: Hashable {
        var caseRef: Int64
        var fieldRef: Int64
    }

    private let lock = NSLock()
    /// Field states held at most; past it the cache starts over (a bound, not an LRU).
    /// Dirty states are bounded separately: a checkpoint runs when they pass
    /// ``dirtyCapacity``.
    let stateCapacity: Int

    var dataVersion: Int64?
    var caseRefs: [CaseID: Int64] = [:]
    var replicaRefs: [ReplicaID: Int64] = [:]
    var replicaNames: [Int64: ReplicaID] = [:]
    var fieldRefs: [FieldKey: Int64] = [:]
    var versions: [Int64: VersionVector] = [:]
    var states: [StateKey: FieldState] = [:]
    /// Field states and version vectors changed since the last checkpoint.
    var dirtyStates: Set<StateKey> = []
    var dirtyCases: Set<Int64> = []
    /// Dirty cases with a changed field that their listing line shows or depends on.
    var listingDirtyCases: Set<Int64> = []
    /// The listed fields' `fieldName.id`s (see ``SummaryRow/isListed(_:)``), once read.
    var listedFieldRefs: [Int64: FieldKey]?
    /// Whether the log's tail has been replayed into this cache.
    var tailReplayed = false
    /// Per case, the changes that added each institution to its participants.
    var grants: [Int64: [String: [Dot]]] = [:]
    /// (case, origin `replica.id`) pairs whose origin was found entitled to write.
    var acceptedWriters: Set<StateKey> = []
    /// Access-log companion case IDs of the cases held, to their cases.
    var companions: [CaseID: Int64]?
    /// Whether any quarantine entry is unresolved (`nil`: not looked up yet).
    var openQuarantine: Bool?

    let dirtyCapacity: Int

    init(stateCapacity: Int = 500_000, dirtyCapacity: Int = 250_000) {
        self.stateCapacity = stateCapacity
        self.dirtyCapacity = dirtyCapacity
    }

    /// Runs `body` with exclusive access; drops the cache if `body` throws, since the
    /// transaction it belongs to rolls back.
    func withLock<T>(_ body: (StoreCache) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        do {
            return try body(self)
        } catch {
            invalidateLocked()
            throw error
        }
    }

    /// Drops everything (caller holds the lock).
    func invalidateLocked() {
        dataVersion = nil
        caseRefs.removeAll()
        replicaRefs.removeAll()
        replicaNames.removeAll()
        fieldRefs.removeAll()
        versions.removeAll()
        states.removeAll()
        dirtyStates.removeAll()
        dirtyCases.removeAll()
        listingDirtyCases.removeAll()
        listedFieldRefs = nil
        tailReplayed = false
        grants.removeAll()
        acceptedWriters.removeAll()
        companions = nil
        openQuarantine = nil
    }

    /// Keeps the cache within its bound (caller holds the lock). Dirty entries are
    /// kept until a checkpoint writes them out.
    func trimLocked() {
        guard dirtyStates.isEmpty && dirtyCases.isEmpty else { return }
        if states.count > stateCapacity { states.removeAll(keepingCapacity: true) }
        if versions.count > stateCapacity / 4 { versions.removeAll(keepingCapacity: true) }
        if caseRefs.count > stateCapacity { caseRefs.removeAll(keepingCapacity: true) }
        if grants.count > stateCapacity / 4 { grants.removeAll(keepingCapacity: true) }
        if acceptedWriters.count > stateCapacity { acceptedWriters.removeAll(keepingCapacity: true) }
    }
}
