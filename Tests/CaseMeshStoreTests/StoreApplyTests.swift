import CaseMeshCRDT
import CaseMeshModel
import CaseMeshTestSupport
import Foundation
import GRDB
import Testing

@_spi(Testing) @testable import CaseMeshStore

/// The store applies changes with exactly the reference semantics of `CaseDocument`,
/// whatever the delivery order, duplication and batching.
@Suite struct StoreApplyTests {
    static func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "casemesh-store-\(UUID().uuidString)"
        return path
    }

    static let reader = try! ReplicaID("reader/node")

    @Test(arguments: [(false, 0), (false, 1), (true, 2), (true, 3)])
    func storeMatchesReferenceDocumentForShuffledBatchedDeliveries(onDisk: Bool, chunk: Int) throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for seed in UInt64(chunk * 25)..<UInt64(chunk * 25 + 25) {
            var history = RandomHistory(seed: seed, steps: 40)
            let reference = history.deliver(history.changes)
            let store =
                onDisk
                ? try CaseStore.create(
                    directory: directory + "/\(seed)", replicaID: Self.reader, schema: RandomHistory.schema)
                : try CaseStore.inMemory(replicaID: Self.reader, schema: RandomHistory.schema)
            var shuffled = history.changes + history.changes.prefix(3)
            shuffled.shuffle(using: &history.generator)
            // Small batches in shuffled order: changes often arrive before their dependencies.
            let batchSize = Int.random(in: 1...7, using: &history.generator)
            var start = 0
            while start < shuffled.count {
                let report = try store.apply(
                    Array(shuffled[start..<min(start + batchSize, shuffled.count)]), batchSize: 3)
                #expect(report.rejected.isEmpty, "seed \(seed)")
                start += batchSize
            }
            let snapshot = try store.snapshot(of: history.caseID)
            #expect(snapshot.fields == reference.fields, "seed \(seed)")
            #expect(snapshot.version == reference.version, "seed \(seed)")
            #expect(try store.pendingCount() == 0, "seed \(seed)")
            let conflicts = try store.openConflicts().map(\.field)
            #expect(conflicts == snapshot.conflicts, "seed \(seed): the conflict table matches the registers")
        }
    }

    @Test func onDiskStoreUsesWALAndSurvivesReopening() throws {
        let directory = Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let history = RandomHistory(seed: 5)
        do {
            let store = try CaseStore.create(directory: directory, replicaID: Self.reader, schema: RandomHistory.schema)
            _ = try store.apply(history.changes)
            let mode = try store.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
            #expect(mode == "wal")
        }
        let reopened = try CaseStore.open(directory: directory, schema: RandomHistory.schema)
        #expect(try reopened.snapshot(of: history.caseID).fields == history.deliver(history.changes).fields)
        #expect(throws: StoreError.self) { try CaseStore.create(directory: directory, replicaID: Self.reader) }
    }

    @Test func invalidChangeIsRefusedWithoutBlockingTheRestOfTheBatch() throws {
        let history = RandomHistory(seed: 11)
        let store = try CaseStore.inMemory(replicaID: Self.reader, schema: RandomHistory.schema)
        let other = try CaseID("case-" + String(repeating: "b", count: 26))
        let origin = try ReplicaID("rogue/laptop")
        let unknownField = Change(
            caseID: other, origin: origin, seq: 1, hlc: HybridTimestamp(physical: 1_700_000_000_000),
            context: VersionVector(), ops: [.assign(FieldKey(entity: "case", field: "nosuch"), .string("x"))])
        var futureClock = unknownField
        futureClock.ops = [.assign(FieldKey(entity: "case", field: "r1"), .string("x"))]
        futureClock.hlc = HybridTimestamp(physical: SystemWallClock().nowMillis() + 3 * 86_400_000)
        var wrongValue = unknownField
        wrongValue.ops = [.append(FieldKey(entity: "case", field: "tags"), "x")]
        let report = try store.apply([wrongValue, futureClock] + history.changes)
        #expect(report.rejected.count == 2)
        #expect(report.rejected.contains { $0.reason.contains("cannot append to") })
        #expect(report.rejected.contains { $0.reason.contains("ahead of the local clock") })
        #expect(report.applied == history.changes.count)
        #expect(throws: StoreError.self) { try store.snapshot(of: other) }
        // A field the schema lacks is not refused: a newer schema's, held (SchemaUpgradeTests).
        var opening = unknownField
        opening.ops.insert(.insert(FieldKey(entity: "case", field: "participants"), "rogue"), at: 0)
        let held = try store.apply([opening])
        #expect(held.rejected.isEmpty && held.heldForNewerSchema == 1, "\(held.rejected)")
        #expect(try store.snapshot(of: history.caseID).fields == history.deliver(history.changes).fields)
    }

    @Test func aChangeFromAnInstitutionThatIsNotAParticipantIsQuarantined() throws {
        let store = try CaseStore.inMemory(replicaID: try ReplicaID("dong.office/server"))
        var generator = SeededGenerator(seed: 5)
        let participants = FieldKey(entity: "case", field: "participants")
        let opened = try store.openCase(ops: [.insert(participants, "senior.centre")], using: &generator)
        let seen = VersionVector([store.replicaID: 1])
        let risk = FieldKey(entity: "case", field: "riskLevel")
        // An institution never added writes to the case, and adds itself while at it.
        let intruder = Change(
            caseID: opened.caseID, origin: try ReplicaID("rogue.centre/server"), seq: 1,
            hlc: HybridTimestamp(physical: SystemWallClock().nowMillis()), context: seen,
            ops: [.insert(participants, "rogue.centre"), .assign(risk, .string("low"))])
        // A participant writes in the same batch.
        let participant = Change(
            caseID: opened.caseID, origin: try ReplicaID("senior.centre/laptop-1"), seq: 1,
            hlc: HybridTimestamp(physical: SystemWallClock().nowMillis()), context: seen,
            ops: [.assign(risk, .string("high"))])
        let report = try store.apply([intruder, participant])
        #expect(report.applied == 1)
        #expect(report.rejected.map(\.reason) == ["quarantined: rogue.centre is not a participant of the case"])
        #expect(try store.quarantined().map(\.origin) == ["rogue.centre/server"])
        let snapshot = try store.snapshot(of: opened.caseID)
        #expect(
            snapshot.fields[risk]
                == .register(
                    RegisterState(siblings: [.init(value: .string("high"), hlc: participant.hlc, dot: participant.dot)])
                ))
        guard case .set(let set)? = snapshot.fields[participants] else { throw StoreError(code: .corrupt, message: "") }
        #expect(set.elements(.addWins) == ["dong.office", "senior.centre"])
    }

    @Test func localChangeIsAtomicAndNumberedDensely() throws {
        let store = try CaseStore.inMemory(replicaID: try ReplicaID("dong.office/server"))
        var generator = SeededGenerator(seed: 3)
        let opened = try store.openCase(
            ops: [.assign(FieldKey(entity: "case", field: "stage"), .string("intake"))], using: &generator)
        #expect(opened.seq == 1)
        let before = try store.snapshot(of: opened.caseID)
        #expect(throws: StoreError.self) {
            try store.write(
                caseID: opened.caseID,
                ops: [
                    .assign(FieldKey(entity: "case", field: "riskLevel"), .string("high")),
                    .assign(FieldKey(entity: "case", field: "riskLevel"), .string("catastrophic")),
                ])
        }
        #expect(try store.snapshot(of: opened.caseID) == before, "a refused change leaves nothing behind")
        let next = try store.write(
            caseID: opened.caseID, ops: [.append(FieldKey(entity: "case", field: "notes"), "first visit")])
        #expect(next.seq == 2)
        #expect(next.context == VersionVector([store.replicaID: 1]))
        let participants = try store.snapshot(of: opened.caseID).fields[FieldKey(entity: "case", field: "participants")]
        #expect(participants == .set(SetState(additions: [.init(element: "dong.office", dot: opened.dot)])))
    }

    @Test func localClockNeverRunsBehindReceivedChanges() throws {
        let store = try CaseStore.inMemory(
            replicaID: try ReplicaID("dong.office/server"), clock: FixedWallClock(millis: 1_700_000_000_000))
        var generator = SeededGenerator(seed: 4)
        let opened = try store.openCase(
            ops: [.insert(FieldKey(entity: "case", field: "participants"), "senior.centre")], using: &generator)
        let peer = try ReplicaID("senior.centre/server")
        let ahead = Change(
            caseID: opened.caseID, origin: peer, seq: 1, hlc: HybridTimestamp(physical: 1_700_000_060_000),
            context: VersionVector([store.replicaID: 1]),
            ops: [.assign(FieldKey(entity: "case", field: "riskLevel"), .string("high"))])
        #expect(try store.apply([ahead]).applied == 1)
        let mine = try store.write(
            caseID: opened.caseID, ops: [.assign(FieldKey(entity: "case", field: "riskLevel"), .string("low"))])
        #expect(mine.hlc > ahead.hlc, "a write that has seen another is later than it")
        #expect(try store.openConflicts().isEmpty)
    }
}

/// Materialized state is written at checkpoints; between them the change log's tail
/// is replayed by readers and by a writer whose cache is cold.
@Suite struct CheckpointTests {
    @Test(arguments: 0..<4)
    func uncheckpointedBatchesAreReplayedByAnotherProcessView(seed: Int) throws {
        let directory = StoreApplyTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let history = RandomHistory(seed: UInt64(seed) + 500, steps: 40)
        let writer = try CaseStore.create(
            directory: directory, replicaID: StoreApplyTests.reader, schema: RandomHistory.schema)
        let ordered = history.changes.sorted(by: Change.causalOrder)
        let half = ordered.count / 2
        _ = try writer.apply(Array(ordered[..<half]))
        // The second half commits to the log in two transactions but is never checkpointed,
        // as if the process was killed before its last batch.
        for part in [ordered[half..<(half + ordered.count) / 2], ordered[(half + ordered.count) / 2..<ordered.count]] {
            _ = try writer.withApplySession(wallMillis: SystemWallClock().nowMillis(), checkpoint: false) { session in
                var report = ApplyReport()
                for change in part { try session.receive(change, body: change.encoded(), report: &report) }
                return report
            }
        }
        let reference = history.deliver(history.changes)
        let reader = try CaseStore.open(directory: directory, schema: RandomHistory.schema)
        #expect(try reader.snapshot(of: history.caseID).fields == reference.fields, "a reader replays the tail")
        #expect(try reader.snapshot(of: history.caseID).version == reference.version)
        #expect(try reader.openConflicts().map(\.field) == (try reader.snapshot(of: history.caseID)).conflicts)
        let exported = try reader.encodedChanges().count
        #expect(exported == history.changes.count, "the log holds every change")

        // A cold writer replays the tail, adds its own change and checkpoints everything.
        let local = try reader.write(caseID: history.caseID, ops: [.append(RandomHistory.log, "after restart")])
        var expected = reference
        try expected.receive(local, rules: TestRules())
        let tailAfter = try reader.read { db in try LogTail(db).isEmpty }
        #expect(tailAfter, "the write checkpointed the tail")
        #expect(try reader.snapshot(of: history.caseID).fields == expected.fields)
        #expect(
            try CaseStore.open(directory: directory, schema: RandomHistory.schema).snapshot(of: history.caseID).fields
                == expected.fields)
    }
}
