import CaseMeshCRDT
import CaseMeshModel
import CaseMeshNode
import CaseMeshStore
import CaseMeshSync
import CaseMeshSyncDriver
import Foundation
import Testing

/// Two real stores synced by the real session logic over an in-memory pipe.
@Suite struct InMemorySyncTests {
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func next() -> Int {
            lock.lock()
            defer { lock.unlock() }
            value += 1
            return value
        }
    }

    /// Runs a session between `a` and `b`; with `cutAfter`, the pipe breaks after
    /// that many messages from `a`.
    static func sync(
        _ a: CaseStore, _ b: CaseStore, pageChanges: Int = 4096, cutAfter: Int? = nil
    ) async -> (SyncRunner.Outcome, SyncRunner.Outcome) {
        let (toB, toBContinuation) = AsyncStream.makeStream(of: SyncMessage.self)
        let (toA, toAContinuation) = AsyncStream.makeStream(of: SyncMessage.self)
        var runnerA = SyncRunner(store: a)
        runnerA.settings.pageChanges = pageChanges
        var runnerB = SyncRunner(store: b)
        runnerB.settings.pageChanges = pageChanges
        let sentByA = Counter()
        async let outcomeA = runnerA.run(peer: b.replicaID, inbound: toA) { message in
            if let cutAfter, sentByA.next() > cutAfter {
                toBContinuation.finish()
                toAContinuation.finish()
                return
            }
            toBContinuation.yield(message)
        }
        async let outcomeB = runnerB.run(peer: a.replicaID, inbound: toB) { message in toAContinuation.yield(message) }
        let results = await (outcomeA, outcomeB)
        toAContinuation.finish()
        toBContinuation.finish()
        return results
    }

    static func store(_ replica: String) throws -> CaseStore {
        try CaseStore.inMemory(replicaID: ReplicaID(replica))
    }

    static func key(_ text: String) -> FieldKey { try! FieldKey(parsing: text) }

    /// Shares a case with institutions under a consent.
    static func share(_ institutions: String...) -> [FieldOperation] {
        ConsentGrant(recipients: institutions.map { try! InstitutionID($0) }).ops()
    }

    @Test func participantsConvergeAndConflictsSurfaceOnBoth() async throws {
        let dong = try Self.store("dong.office/server")
        let senior = try Self.store("senior.centre/server")
        var generator = SeededGenerator(seed: 1)
        let opened = try dong.openCase(ops: [.assign(Self.key("riskLevel"), .string("high"))], using: &generator)
        try dong.write(caseID: opened.caseID, ops: Self.share("senior.centre"))
        let (first, second) = await Self.sync(dong, senior)
        #expect(first.error == nil && second.error == nil)
        try dong.write(caseID: opened.caseID, ops: [.assign(Self.key("riskLevel"), .string("crisis"))])
        try senior.write(caseID: opened.caseID, ops: [.assign(Self.key("riskLevel"), .string("medium"))])
        try senior.write(caseID: opened.caseID, ops: [.append(Self.key("notes"), "home visit")])
        let (a, b) = await Self.sync(senior, dong)
        #expect(a.error == nil && b.error == nil)
        #expect(try dong.snapshot(of: opened.caseID) == senior.snapshot(of: opened.caseID))
        #expect(try dong.openConflicts().map(\.field) == [Self.key("riskLevel")])
        #expect(try senior.openConflicts().map(\.field) == [Self.key("riskLevel")])
    }

    /// A session's pages remember which cases the puller may see, until a change to
    /// the case: a change that shares a case (or stops sharing it) between two pages
    /// is taken into account at once, while changes to other cases keep the memo.
    @Test func pageMemoForgetsEntitlementsWhenTheLogGrows() throws {
        let dong = try Self.store("dong.office/server")
        var generator = SeededGenerator(seed: 7)
        let opened = try dong.openCase(ops: [.assign(Self.key("riskLevel"), .string("high"))], using: &generator)
        let senior = try InstitutionID("senior.centre")
        let memo = LogPageMemo()
        #expect(try dong.logPage(from: 1, for: senior, memo: memo).changes.isEmpty)
        // Another case grows the log; the first is still not the centre's.
        let other = try dong.openCase(ops: [.assign(Self.key("riskLevel"), .string("low"))], using: &generator)
        #expect(try dong.logPage(from: 1, for: senior, memo: memo).changes.isEmpty)
        try dong.write(caseID: other.caseID, ops: [.assign(Self.key("riskLevel"), .string("medium"))])
        try dong.write(caseID: opened.caseID, ops: Self.share("senior.centre"))
        #expect(try dong.logPage(from: 1, for: senior, memo: memo).changes.count == 2)
        #expect(try dong.logPage(from: 1, for: senior, memo: memo).changes.allSatisfy { $0.caseID == opened.caseID })
        try dong.write(caseID: opened.caseID, ops: [.remove(Self.key("participants"), "senior.centre")])
        try dong.write(caseID: opened.caseID, ops: [.assign(Self.key("riskLevel"), .string("low"))])
        let after = try dong.logPage(from: 5, for: senior, memo: memo).changes
        // The removal still goes to the removed institution (with what it had seen);
        // the edit after it does not.
        #expect(after.last?.ops == [.remove(Self.key("participants"), "senior.centre")])
        #expect(!after.contains { $0.ops == [.assign(Self.key("riskLevel"), .string("low"))] })
        #expect(after == (try dong.logPage(from: 5, for: senior, memo: LogPageMemo()).changes))
    }

    @Test func nonParticipantReceivesNothingOfTheCase() async throws {
        let dong = try Self.store("dong.office/server")
        let community = try Self.store("community.centre/server")
        var generator = SeededGenerator(seed: 2)
        let privateCase = try dong.openCase(using: &generator)
        let (a, b) = await Self.sync(dong, community)
        #expect(a.error == nil && b.error == nil)
        #expect(throws: StoreError.self) { try community.snapshot(of: privateCase.caseID) }
        #expect(try community.encodedChanges().isEmpty)
        #expect(b.summary.changesReceived == 0)
    }

    @Test func aChainRelaysChangesItDidNotWrite() async throws {
        let a = try Self.store("dong.office/server")
        let b = try Self.store("senior.centre/server")
        let c = try Self.store("mental.centre/server")
        var generator = SeededGenerator(seed: 3)
        let opened = try a.openCase(using: &generator)
        try a.write(
            caseID: opened.caseID,
            ops: Self.share("senior.centre", "mental.centre"))
        try a.write(caseID: opened.caseID, ops: [.append(Self.key("notes"), "written at the dong office")])
        _ = await Self.sync(a, b)
        _ = await Self.sync(b, c)
        #expect(try c.snapshot(of: opened.caseID) == a.snapshot(of: opened.caseID), "C got A's changes through B")
    }

    @Test func aNewParticipantReceivesTheWholeHistory() async throws {
        let dong = try Self.store("dong.office/server")
        let senior = try Self.store("senior.centre/server")
        var generator = SeededGenerator(seed: 4)
        let opened = try dong.openCase(using: &generator)
        for index in 0..<40 {
            try dong.write(caseID: opened.caseID, ops: [.append(Self.key("notes"), "note \(index)")])
        }
        _ = await Self.sync(dong, senior)
        #expect(throws: StoreError.self) { try senior.snapshot(of: opened.caseID) }
        try dong.write(caseID: opened.caseID, ops: Self.share("senior.centre"))
        let (_, pulled) = await Self.sync(dong, senior)
        #expect(pulled.error == nil)
        #expect(try senior.snapshot(of: opened.caseID) == dong.snapshot(of: opened.caseID))
        #expect(try senior.pendingCount() == 0)
    }

    @Test func anIdleSyncMovesNothing() async throws {
        let dong = try Self.store("dong.office/server")
        let senior = try Self.store("senior.centre/server")
        var generator = SeededGenerator(seed: 5)
        for _ in 0..<30 {
            let opened = try dong.openCase(using: &generator)
            try dong.write(caseID: opened.caseID, ops: Self.share("senior.centre"))
        }
        let (first, _) = await Self.sync(dong, senior)
        #expect(first.summary.changesSent == 60)
        // The senior centre relays the dong office's changes back once (it cannot know
        // they came from there); after that nothing moves.
        _ = await Self.sync(dong, senior)
        let (idleA, idleB) = await Self.sync(dong, senior)
        #expect(idleA.error == nil && idleB.error == nil)
        #expect(idleA.summary.changesSent == 0 && idleB.summary.changesSent == 0)
        #expect(idleA.summary.batchesSent == 1 && idleB.summary.batchesSent == 1)
    }

    @Test func anInterruptedSyncResumesAfterTheLastDurableBatch() async throws {
        let dong = try Self.store("dong.office/server")
        let senior = try Self.store("senior.centre/server")
        var generator = SeededGenerator(seed: 6)
        for _ in 0..<200 {
            let opened = try dong.openCase(using: &generator)
            try dong.write(caseID: opened.caseID, ops: Self.share("senior.centre"))
        }
        let (cutA, cutB) = await Self.sync(dong, senior, pageChanges: 25, cutAfter: 5)
        #expect(cutA.error != nil && cutB.error != nil, "the broken pipe ends both sides")
        let partial = try senior.encodedChanges().count
        #expect(partial > 0 && partial < 400)
        let cursor = try senior.pullCursor(for: dong.replicaID)
        #expect(cursor.cursor > 1)
        let (resumedA, resumedB) = await Self.sync(dong, senior, pageChanges: 25)
        #expect(resumedA.error == nil && resumedB.error == nil)
        #expect(try senior.encodedChanges().count == 400)
        #expect(resumedB.summary.changesReceived <= 400 - partial + 25, "resumed where it stopped, not from the start")
    }

    @Test func aPeerClaimingAnotherIdentityIsRefused() async throws {
        let dong = try Self.store("dong.office/server")
        let impostor = try Self.store("senior.centre/server")
        let (toDong, toDongContinuation) = AsyncStream.makeStream(of: SyncMessage.self)
        toDongContinuation.yield(
            .hello(
                .init(
                    protocolVersion: 2, schemaVersion: 2, replica: try ReplicaID("mental.centre/server"),
                    logIdentity: "x")))
        toDongContinuation.finish()
        let sent = Counter()
        let outcome = await SyncRunner(store: dong).run(peer: impostor.replicaID, inbound: toDong) { _ in
            _ = sent.next()
        }
        #expect(
            outcome.error
                == .identityMismatch(
                    claimed: try ReplicaID("mental.centre/server"), certified: try ReplicaID("senior.centre/server")))
    }
}
