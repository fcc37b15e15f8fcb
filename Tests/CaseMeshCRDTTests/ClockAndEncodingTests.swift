import CaseMeshCRDT
import CaseMeshTestSupport
import Testing

@Suite struct ClockTests {
    @Test func tickIsMonotonicEvenWhenTheWallClockGoesBack() {
        var clock = HybridLogicalClock()
        let first = clock.tick(wallMillis: 1000)
        let second = clock.tick(wallMillis: 900)
        let third = clock.tick(wallMillis: 1000)
        #expect(first < second && second < third)
        #expect(clock.tick(wallMillis: 2000) == HybridTimestamp(physical: 2000, logical: 0))
    }

    @Test func timestampFarAheadOfTheWallClockIsRefused() {
        var clock = HybridLogicalClock(maximumDriftMillis: 60_000)
        let threeDaysAhead = HybridTimestamp(physical: 1_000_000 + 3 * 86_400_000)
        #expect(throws: CRDTError.self) { try clock.observe(threeDaysAhead, wallMillis: 1_000_000) }
        #expect(clock.latest == .zero, "a refused timestamp leaves the clock unchanged")
        #expect(throws: Never.self) { try clock.observe(HybridTimestamp(physical: 1_030_000), wallMillis: 1_000_000) }
        #expect(clock.tick(wallMillis: 1_000_000) > HybridTimestamp(physical: 1_030_000))
    }
}

@Suite struct EncodingTests {
    @Test(arguments: 0..<20)
    func changesRoundTrip(seed: Int) throws {
        let history = RandomHistory(seed: UInt64(seed) + 10_000)
        for change in history.changes {
            #expect(try Change(decoding: change.encoded()) == change)
        }
        for state in history.documents[0].fields.values {
            #expect(try FieldState(decoding: state.encoded()) == state)
        }
    }

    @Test func truncatedOrCorruptedBytesThrowInsteadOfTrapping() throws {
        let history = RandomHistory(seed: 7)
        var generator = SeededGenerator(seed: 99)
        for change in history.changes {
            let bytes = change.encoded()
            for cut in 0..<bytes.count {
                #expect(throws: CRDTError.self) { try Change(decoding: Array(bytes[..<cut])) }
            }
            for _ in 0..<50 {
                var corrupted = bytes
                corrupted[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(
                    in: 0...255, using: &generator)
                // Either a clean error or a (different but valid) change: never a crash.
                _ = try? Change(decoding: corrupted)
            }
        }
        #expect(throws: CRDTError.self) { try Change(decoding: Array(repeating: 0xFF, count: 40)) }
    }

    @Test func identifiersAreValidated() throws {
        #expect(throws: CRDTError.self) { try ReplicaID("no-slash") }
        #expect(throws: CRDTError.self) { try ReplicaID("Upper/case") }
        #expect(throws: CRDTError.self) { try ReplicaID("a/b/c") }
        #expect(throws: CRDTError.self) { try CaseID("case-short") }
        #expect(throws: CRDTError.self) { try FieldKey(parsing: "a.b.c") }
        #expect(throws: Never.self) { try ReplicaID("uijeongbu.mental-health/laptop-3") }
        #expect(try FieldKey(parsing: "person#p1.name") == FieldKey(entity: "person", instance: "p1", field: "name"))
        #expect(try FieldKey(parsing: "stage") == FieldKey(entity: "case", field: "stage"))
        var generator = SeededGenerator(seed: 1)
        let id = CaseID.random(using: &generator)
        #expect(try CaseID(id.rawValue) == id)
    }
}
