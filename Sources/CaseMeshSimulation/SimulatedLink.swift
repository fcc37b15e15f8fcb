import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
import CaseMeshSync
import CaseMeshSyncDriver

/// Runs the production sync driver (``SyncDriver``: sealing, signer checks against
/// the simulation's CA, the writer policy, paging, acks) between two stores in one
/// task, message by message, so a run is reproducible from its seed; the connection
/// can be cut after any message (a dropped connection, a cable pulled).
struct SimulatedLink {
    struct Result {
        var finished: Bool
        var changesMoved: Int
        /// Changes either side refused, with why.
        var refused: [String]
    }

    /// One end of the link: a store and how its node signs and verifies.
    struct End {
        var store: CaseStore
        var authentication: SyncDriver.Authentication?
    }

    /// How a hostile relay (`a`) falsifies a change it serves.
    enum Tamper {
        /// Changes what the change says; its origin's seal no longer matches.
        case alter
        /// Covers the change with a seal the relay made itself.
        case resign
    }

    /// Syncs `a` and `b`; with `cutAfter`, the connection breaks after that many messages.
    ///
    /// - Parameters:
    ///   - purging: whether both then purge what their institutions may no longer
    ///     hold, as every node does after a session.
    ///   - tamper: how `a` falsifies the first change of another origin it serves.
    ///   - onDelivered: called with the count after each message delivered (to edit
    ///     a store while its node serves).
    static func sync(
        _ a: End, _ b: End, cutAfter: Int?, purging: Bool = true, tamper: Tamper? = nil,
        onDelivered: (Int) throws -> Void = { _ in }
    ) async throws -> Result {
        var tamper = tamper
        func settings(_ end: End) -> SyncDriver.Settings {
            var settings = SyncDriver.Settings()
            // Small pages, so paging, windows and acks are exercised on small logs.
            settings.pageChanges = 7
            settings.authentication = end.authentication
            return settings
        }
        var drivers = [
            SyncDriver(store: a.store, peer: b.store.replicaID, settings: settings(a)),
            SyncDriver(store: b.store, peer: a.store.replicaID, settings: settings(b)),
        ]
        // inbox[i]: messages on their way to driver i, in order.
        var inbox: [[SyncMessage]] = [[], []]
        var outcomes: [SyncDriver.Outcome?] = [nil, nil]
        var delivered = 0
        /// Lets driver `i` work until it waits for a message or ends; what it sends
        /// goes to the other's inbox (or nowhere, once the other has closed).
        func pump(_ i: Int) async {
            while outcomes[i] == nil {
                switch await drivers[i].next() {
                case .send(var message):
                    if i == 0, let how = tamper, case .batch(var batch) = message,
                        let falsified = Self.falsify(&batch, how, relay: a.store.replicaID)
                    {
                        message = .batch(batch)
                        tamper = falsified ? nil : tamper
                    }
                    if outcomes[1 - i] == nil { inbox[1 - i].append(message) }
                case .awaitMessage:
                    return
                case .ended(let outcome):
                    outcomes[i] = outcome
                }
            }
        }
        await pump(0)
        await pump(1)
        while outcomes.contains(where: { $0 == nil }) {
            if let cutAfter, delivered >= cutAfter {
                for i in 0..<2 where outcomes[i] == nil {
                    drivers[i].connectionLost("cut")
                    await pump(i)
                }
                break
            }
            // B's inbox first, then A's: one fixed interleaving per seed.
            if let i = [1, 0].first(where: { outcomes[$0] == nil && !inbox[$0].isEmpty }) {
                let message = inbox[i].removeFirst()
                delivered += 1
                drivers[i].receive(message)
                try onDelivered(delivered)
                await pump(i)
            } else if let waiting = (0..<2).first(where: { outcomes[$0] == nil }), outcomes[1 - waiting] != nil {
                // The other side ended and closed the connection.
                drivers[waiting].connectionLost("the peer closed the connection")
                await pump(waiting)
            } else {
                // Both wait and nothing is in flight: a stuck protocol.
                throw SimulationError("sync between \(a.store.replicaID) and \(b.store.replicaID) stalled")
            }
        }
        if purging {
            try a.store.purgeUnentitledCases()
            try b.store.purgeUnentitledCases()
        }
        let ended = outcomes.compactMap { $0 }
        return Result(
            finished: ended.allSatisfy { $0.error == nil },
            changesMoved: ended.map(\.summary.changesApplied).reduce(0, +),
            refused: ended.flatMap(\.refused))
    }
}

extension SimulatedLink {
    /// Falsifies the first change in `batch` that `relay` did not write.
    ///
    /// - Returns: whether a change was falsified (`nil`: none to falsify).
    static func falsify(_ batch: inout SyncMessage.Batch, _ how: Tamper, relay: ReplicaID) -> Bool? {
        guard let index = batch.changes.indices.first(where: { batch.changes[$0].origin != relay }) else {
            return nil
        }
        switch how {
        case .alter:
            // The note a case worker wrote now says something else.
            batch.changes[index].ops.append(.append(CaseField.notes, "falsified by \(relay)"))
        case .resign:
            // The relay's own seal, valid, over another origin's change.
            guard let own = batch.seals.firstIndex(where: { $0.origin == relay }),
                batch.leaves.indices.contains(index)
            else { return nil }
            batch.changes[index].ops.append(.append(CaseField.notes, "re-signed by \(relay)"))
            batch.leaves[index] = SealLeaf(seal: own, leaf: 0)
        }
        return true
    }
}

/// A failure of the simulation itself (not a property violation).
struct SimulationError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) { self.description = description }
}
