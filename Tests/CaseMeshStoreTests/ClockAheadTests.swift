import CaseMeshCRDT
import CaseMeshStore
import Foundation
import Testing

/// A node whose clock was set ahead, then fixed, does not stamp new changes with a
/// timestamp every peer would refuse: it says why instead.
@Suite struct ClockAheadTests {
    @Test func aNodeRefusesToStampChangesFarAheadOfItsOwnClock() throws {
        let now: UInt64 = 1_795_392_000_000
        let day: UInt64 = 86_400_000
        let clock = RetentionTests.MovableClock(now + day)
        let store = try CaseStore.inMemory(replicaID: ReplicaID("senior.centre/laptop-1"), clock: clock)
        var generator = SystemRandomNumberGenerator()
        let caseID = try store.openCase(using: &generator).caseID
        let note = FieldKey(entity: "case", field: "notes")
        // The clock is fixed: a day back. Writing now would stamp a day ahead.
        clock.set(now)
        #expect {
            try store.write(caseID: caseID, ops: [.append(note, "visit")])
        } throws: { error in
            (error as? StoreError)?.message.contains("24.0 hours ahead of its clock") == true
        }
        // Once the clock is within the drift bound of the last timestamp, writes go on.
        clock.set(now + day - 60_000)
        let change = try store.write(caseID: caseID, ops: [.append(note, "visit")])
        #expect(change.hlc.physical >= now + day, "still after every earlier change")
    }
}
