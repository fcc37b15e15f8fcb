import CaseMeshCRDT
import CaseMeshStore
import CaseMeshSync

/// Runs the real sync session logic between two stores in one thread, message by
/// message, so a run is reproducible from its seed; the connection can be cut after
/// any message (a dropped connection, a cable pulled).
struct SimulatedLink {
    struct Result {
        var finished: Bool
        var changesMoved: Int
    }

    /// Syncs `a` and `b`; with `cutAfter`, the connection breaks after that many messages.
    ///
    /// - Parameter purging: whether both then purge what their institutions may no
    ///   longer hold, as every node does after a session.
    static func sync(_ a: CaseStore, _ b: CaseStore, cutAfter: Int?, purging: Bool = true) throws -> Result {
        var sideA = try Side(store: a, peer: b.replicaID)
        var sideB = try Side(store: b, peer: a.replicaID)
        var toA: [SyncMessage] = []
        var toB: [SyncMessage] = []
        var delivered = 0
        try sideA.perform(sideA.session.start(), outbox: &toB)
        try sideB.perform(sideB.session.start(), outbox: &toA)
        while !(sideA.session.isEnded && sideB.session.isEnded) {
            if let cutAfter, delivered >= cutAfter {
                try sideA.perform(sideA.session.connectionLost("cut"), outbox: &toB)
                try sideB.perform(sideB.session.connectionLost("cut"), outbox: &toA)
                break
            }
            if !toB.isEmpty {
                let message = toB.removeFirst()
                delivered += 1
                try sideB.perform(sideB.session.receive(message), outbox: &toA)
            } else if !toA.isEmpty {
                let message = toA.removeFirst()
                delivered += 1
                try sideA.perform(sideA.session.receive(message), outbox: &toB)
            } else {
                // Nothing in flight and not ended: a stuck protocol.
                throw SimulationError("sync between \(a.replicaID) and \(b.replicaID) stalled")
            }
        }
        // As a node does after every session: what the peer now holds of this log,
        // then the need-to-know pass (a withdrawal that arrived, own edits gone out).
        for side in [sideA, sideB] {
            var delivered = OwnChangesSent()
            for page in side.ownSent where page.nextCursor <= side.session.summary.peerHolds {
                delivered.formUnion(page.own)
            }
            try side.store.recordDelivered(delivered)
        }
        if purging {
            try a.purgeUnentitledCases()
            try b.purgeUnentitledCases()
        }
        return Result(
            finished: sideA.finished && sideB.finished,
            changesMoved: sideA.session.summary.changesApplied + sideB.session.summary.changesApplied)
    }

    private struct Side {
        let store: CaseStore
        let peer: ReplicaID
        var session: SyncSession
        var finished = false
        var holding = false
        /// Pages sent that carried this store's own changes, with where each ends.
        var ownSent: [(nextCursor: UInt64, own: OwnChangesSent)] = []

        init(store: CaseStore, peer: ReplicaID) throws {
            self.store = store
            self.peer = peer
            let cursor = try store.pullCursor(for: peer)
            session = SyncSession(
                configuration: .init(schemaVersion: UInt64(store.schema.version)),
                local: .init(replica: store.replicaID, logIdentity: try store.logIdentity()), peer: peer,
                pullFrom: .init(logIdentity: cursor.logIdentity, cursor: cursor.cursor))
        }

        /// Performs the actions and those they lead to; messages to send go to `outbox`.
        mutating func perform(_ actions: [SyncSession.Action], outbox: inout [SyncMessage]) throws {
            var queue = actions
            while !queue.isEmpty {
                switch queue.removeFirst() {
                case .send(let message):
                    outbox.append(message)
                case .loadPage(let cursor):
                    let page = try store.logPage(from: cursor, for: peer.institution, maxChanges: 7)
                    if !page.ownChangesSent.isEmpty { ownSent.append((page.nextCursor, page.ownChangesSent)) }
                    queue += session.pageLoaded(
                        .init(changes: page.changes, nextCursor: page.nextCursor, isFinal: page.isFinal))
                case .applyBatch(let batch):
                    let report = try store.applyPulled(
                        batch.changes, from: peer, logIdentity: batch.logIdentity, nextCursor: batch.nextCursor,
                        checkpoint: batch.isFinal, holdCursor: holding)
                    holding = holding || report.cursorHeld
                    queue += session.batchApplied(
                        report.applied, durableCursor: report.cursorHeld ? report.durableCursor : nil)
                case .finish:
                    finished = true
                case .fail:
                    finished = false
                }
            }
        }
    }
}

/// A failure of the simulation itself (not a property violation).
struct SimulationError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) { self.description = description }
}
