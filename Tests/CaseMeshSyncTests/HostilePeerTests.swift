import CaseMeshCRDT
import CaseMeshNode
import CaseMeshStore
import CaseMeshSync
import CaseMeshSyncDriver
import Foundation
import Testing

/// What a certificate holder can send: numbers at the edge of 64 bits and messages
/// out of turn are refused with a reason, never a trap or a spinning session.
@Suite struct HostilePeerTests {
    static let peer = try! ReplicaID("dong.office/server")

    /// A varint of `value`, as the wire encodes numbers.
    static func varint(_ value: UInt64) -> [UInt8] {
        var writer = BinaryWriter()
        writer.writeVarint(value)
        return writer.bytes
    }

    @Test(arguments: [UInt64(1) << 63, UInt64.max])
    func numbersPastSignedSixtyFourBitsAreRefusedWhereTheyAreDecoded(value: UInt64) throws {
        // A batch whose next cursor, an ack and a pull whose cursor are past Int64.max.
        for message in [
            SyncMessage.batch(.init(logIdentity: "x", changes: [], nextCursor: value, isFinal: true)),
            .ack(.init(cursor: value)), .pull(.init(logIdentity: "x", cursor: value)),
        ] {
            #expect(throws: CRDTError.self) { try SyncMessage(decoding: message.encoded()) }
        }
        // A change with such a sequence number or timestamp, canonical and compact.
        let caseID = try CaseID("case-" + String(repeating: "a", count: 26))
        for (seq, physical) in [(value, UInt64(1)), (1, value)] {
            let change = Change(
                caseID: caseID, origin: Self.peer, seq: seq, hlc: HybridTimestamp(physical: physical),
                context: VersionVector(seq == 1 ? [:] : [Self.peer: seq - 1]),
                ops: [.append(FieldKey(entity: "case", field: "notes"), "x")])
            #expect(throws: CRDTError.self) { try Change(decoding: change.encoded()) }
            #expect(throws: CRDTError.self) { try change.validateStructure() }
            var encoder = CompactChangeEncoder()
            var decoder = CompactChangeDecoder()
            let batch = SyncMessage.batch(.init(logIdentity: "x", changes: [change], nextCursor: 2, isFinal: true))
            #expect(throws: CRDTError.self) {
                try SyncMessage(decoding: batch.encoded(changes: &encoder), changes: &decoder)
            }
        }
        // A seal numbered past it.
        let seal = Seal(
            origin: Self.peer, number: value, leafCount: 1, signature: Array(repeating: 1, count: 64), digests: [:])
        var writer = BinaryWriter()
        seal.encode(into: &writer)
        var reader = BinaryReader(writer.bytes)
        #expect(throws: CRDTError.self) { try Seal(from: &reader) }
    }

    /// A change that reads but is not valid (a field name that does not parse, a
    /// redaction of an entry its origin had not seen) is refused alone: the changes
    /// around it in the same batch still arrive, with their seal leaves.
    @Test func oneInvalidChangeIsRefusedAloneAndTheRestOfTheBatchArrives() throws {
        let caseID = try CaseID("case-" + String(repeating: "c", count: 26))
        func change(_ seq: UInt64, _ op: FieldOperation) -> Change {
            Change(
                caseID: caseID, origin: Self.peer, seq: seq, hlc: HybridTimestamp(physical: 1_000 + seq),
                context: VersionVector(seq == 1 ? [:] : [Self.peer: seq - 1]), ops: [op])
        }
        let notes = FieldKey(entity: "case", field: "notes")
        let good1 = change(1, .append(notes, "first"))
        let badField = change(2, .assign(FieldKey(entity: "person", instance: "P1", field: "name"), .string("x")))
        let badRedaction = change(
            3, .redact(notes, LogEntryID(dot: Dot(origin: Self.peer, seq: 9), index: 0)))
        let good2 = change(4, .append(notes, "second"))
        let leaves = (0..<4).map { SealLeaf(seal: 0, leaf: $0) }
        let seal = Seal(
            origin: Self.peer, number: 1, leafCount: 4, signature: Array(repeating: 1, count: 64), digests: [:])
        var encoder = CompactChangeEncoder()
        var decoder = CompactChangeDecoder()
        let sent = SyncMessage.batch(
            .init(
                logIdentity: "x", changes: [good1, badField, badRedaction, good2], nextCursor: 5, isFinal: true,
                leaves: leaves, seals: [seal]))
        guard case .batch(let batch) = try SyncMessage(decoding: sent.encoded(changes: &encoder), changes: &decoder)
        else {
            Issue.record("not a batch")
            return
        }
        #expect(batch.changes == [good1, good2])
        #expect(batch.leaves == [leaves[0], leaves[3]], "each kept change keeps its own leaf")
        #expect(batch.refused.count == 2)
        #expect(batch.refused[0].label.hasSuffix(":2") && batch.refused[0].reason.contains("person#P1.name"))
        #expect(batch.refused[1].label.hasSuffix(":3") && batch.refused[1].reason.contains("had not seen"))
        // The connection's string table is still in step: the next batch reads.
        let next = SyncMessage.batch(
            .init(logIdentity: "x", changes: [change(5, .append(notes, "third"))], nextCursor: 6, isFinal: true))
        guard case .batch(let after) = try SyncMessage(decoding: next.encoded(changes: &encoder), changes: &decoder)
        else {
            Issue.record("not a batch")
            return
        }
        #expect(after.changes.count == 1 && after.refused.isEmpty)
    }

    /// Hello, then an ack for nothing, then the connection resets: the refusal cannot be
    /// sent, and the session must end rather than loop on the finished stream.
    @Test(.timeLimit(.minutes(1))) func anAckOutOfTurnOnAResetConnectionEndsTheSession() async throws {
        let store = try CaseStore.inMemory(replicaID: ReplicaID("senior.centre/server"))
        let runner = SyncRunner(store: store)
        let (inbound, continuation) = AsyncStream.makeStream(of: SyncMessage.self)
        continuation.yield(
            .hello(
                .init(
                    protocolVersion: 2, schemaVersion: UInt64(store.schema.version), replica: Self.peer,
                    logIdentity: "x")))
        continuation.yield(.ack(.init(cursor: 5)))
        continuation.finish()
        struct Reset: Error {}
        let sent = InMemorySyncTests.Counter()
        let outcome = await runner.run(peer: Self.peer, inbound: inbound) { message in
            // The hello and the pull go out; the refusal finds the connection reset.
            if sent.next() > 2 { throw Reset() }
        }
        #expect(outcome.error != nil, "the session failed rather than spinning")
    }
}

/// Periodic sync: rounds start every interval ± 20%, never at twice it.
@Suite struct SyncScheduleTests {
    @Test(arguments: [0.8, 1.0, 1.2])
    func roundsStartEveryIntervalWithJitter(jitter: Double) {
        let peer = try! ReplicaID("senior.centre/server")
        var schedule = SyncSchedule(intervalSeconds: 30)
        var now = 0.0
        var starts: [Double] = []
        for _ in 0..<5 {
            #expect(schedule.isDue(peer, at: now))
            starts.append(now)
            // The round itself takes two seconds; the next is due from its start.
            schedule.attempted(peer, failures: 0, startedAt: now, jitter: jitter)
            now += 2
            #expect(!schedule.isDue(peer, at: now))
            now += schedule.nextWait(at: now)
        }
        for (earlier, later) in zip(starts, starts.dropFirst()) {
            #expect(
                abs((later - earlier) - 30 * jitter) < 0.01, "a round every \(30 * jitter) s, not \(later - earlier)")
        }
    }

    @Test func aFailingPeerBacksOffExponentiallyToAtMost32Intervals() {
        let peer = try! ReplicaID("senior.centre/server")
        var schedule = SyncSchedule(intervalSeconds: 10)
        schedule.attempted(peer, failures: 3, startedAt: 0, jitter: 1)
        #expect(schedule.nextWait(at: 0) == 80)
        schedule.attempted(peer, failures: 40, startedAt: 0, jitter: 1)
        #expect(schedule.nextWait(at: 0) == 320)
        schedule.attempted(peer, failures: 0, startedAt: 0, jitter: 5)
        #expect(schedule.nextWait(at: 0) == 12, "jitter is clamped to ±20%")
    }
}

/// Memory a peer can make a node hold for one connection is bounded.
@Suite struct ConnectionBoundsTests {
    @Test func aPeerDefiningEverLongerStringsIsRefusedPastTheTablesBound() throws {
        let origin = try ReplicaID("dong.office/server")
        let caseID = try CaseID("case-" + String(repeating: "b", count: 26))
        var encoder = CompactChangeEncoder()
        var decoder = CompactChangeDecoder()
        let megabyte = 1 << 20
        let piece = megabyte - 16
        var refusedAt: Int?
        for index in 0..<(CompactChangeDecoder.maximumStringBytes / megabyte + 2) {
            let element = String(index) + String(repeating: "x", count: piece)
            let change = Change(
                caseID: caseID, origin: origin, seq: UInt64(index + 1), hlc: HybridTimestamp(physical: 1),
                context: VersionVector(index == 0 ? [:] : [origin: UInt64(index)]),
                ops: [.insert(FieldKey(entity: "case", field: "tags"), element)])
            let batch = SyncMessage.batch(.init(logIdentity: "x", changes: [change], nextCursor: 2, isFinal: false))
            do {
                _ = try SyncMessage(decoding: batch.encoded(changes: &encoder), changes: &decoder)
            } catch {
                refusedAt = index
                break
            }
        }
        #expect(refusedAt == CompactChangeDecoder.maximumStringBytes / piece, "refused once past 64 MiB")
    }
}
