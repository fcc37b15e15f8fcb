import CaseMeshCRDT
import CaseMeshModel
@_spi(Testing) import CaseMeshStore
import Foundation
import Testing

/// Access-log entries are destroyed at the end of their retention period.
@Suite struct RetentionTests {
    final class MovableClock: WallClock, @unchecked Sendable {
        private let lock = NSLock()
        private var millis: UInt64
        init(_ millis: UInt64) { self.millis = millis }
        func nowMillis() -> UInt64 {
            lock.lock()
            defer { lock.unlock() }
            return millis
        }
        func advance(days: UInt64) {
            lock.lock()
            millis += days * 86_400_000
            lock.unlock()
        }
        /// Sets the clock, backwards too (a clock that was wrong and is fixed).
        func set(_ value: UInt64) {
            lock.lock()
            millis = value
            lock.unlock()
        }
    }

    @Test func entriesPastRetentionAreDestroyedAndTheLogStillReplicates() throws {
        let clock = MovableClock(1_795_392_000_000)
        let dong = try CaseStore.inMemory(replicaID: try ReplicaID("dong.office/server"), clock: clock)
        var generator = SeededGenerator(seed: 12)
        let opened = try dong.openCase(using: &generator)
        for _ in 0..<3 {
            try dong.recordAccess(
                to: opened.caseID, AccessRecord(action: .read, actor: "old-reader", purpose: "monitoring", via: "test"))
        }
        clock.advance(days: 800)
        try dong.recordAccess(
            to: opened.caseID,
            AccessRecord(action: .write, actor: "new-writer", purpose: "case-management", via: "test"))

        #expect(try dong.pruneAccessLogs(olderThanDays: 730) == 3)
        #expect(try dong.accessLog(of: opened.caseID).map(\.record.actor) == ["new-writer"])
        let stored = try dong.encodedChanges().flatMap { $0 }
        #expect(!stored.contains(elementsOf: Array("old-reader".utf8)), "the entries' bytes are gone")
        #expect(try dong.pruneAccessLogs(olderThanDays: 730) == 0, "pruning again finds nothing")

        // Another node of the institution receives the pruned log whole: no change waits.
        let laptop = try CaseStore.inMemory(replicaID: try ReplicaID("dong.office/laptop-1"), clock: clock)
        let report = try laptop.apply(try dong.encodedChanges().map { try Change(decoding: $0) })
        #expect(report.deferred == 0 && report.rejected.isEmpty)
        #expect(try laptop.accessLog(of: opened.caseID).map(\.record.actor) == ["new-writer"])
    }
}

extension Array where Element == UInt8 {
    func contains(elementsOf needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        return (0...(count - needle.count)).contains { self[$0..<$0 + needle.count].elementsEqual(needle) }
    }
}
