import CaseMeshCRDT
import CaseMeshTestSupport
import Testing

/// CRDT laws over seeded random concurrent histories: 10 chunks of 100 seeds per law,
/// 1,000 histories each. A failure names its seed; `RandomHistory(seed:)` replays it.
@Suite struct MergeLawTests {
    static let chunks = Array(0..<10)
    static let seedsPerChunk: UInt64 = 100

    static func seeds(_ chunk: Int) -> Range<UInt64> {
        UInt64(chunk) * seedsPerChunk..<UInt64(chunk + 1) * seedsPerChunk
    }

    @Test(arguments: chunks)
    func convergenceUnderAnyDeliveryOrderWithDuplicates(chunk: Int) {
        for seed in Self.seeds(chunk) {
            var history = RandomHistory(seed: seed)
            let reference = history.deliver(history.changes)
            var shuffled = history.changes + history.changes.prefix(5)
            shuffled.shuffle(using: &history.generator)
            let delivered = history.deliver(shuffled)
            #expect(delivered.stateDigest == reference.stateDigest, "seed \(seed)")
            #expect(delivered.pending.isEmpty, "seed \(seed)")
            #expect(delivered.version == reference.version, "seed \(seed)")
        }
    }

    @Test(arguments: chunks)
    func mergeIsCommutative(chunk: Int) throws {
        for seed in Self.seeds(chunk) {
            let history = RandomHistory(seed: seed)
            var ab = history.documents[0]
            try ab.merge(history.documents[1], rules: TestRules())
            var ba = history.documents[1]
            try ba.merge(history.documents[0], rules: TestRules())
            #expect(ab.stateDigest == ba.stateDigest, "seed \(seed)")
            #expect(ab.version == ba.version, "seed \(seed)")
        }
    }

    @Test(arguments: chunks)
    func mergeIsAssociative(chunk: Int) throws {
        for seed in Self.seeds(chunk) {
            let history = RandomHistory(seed: seed)
            let (a, b, c) = (history.documents[0], history.documents[1], history.documents[2])
            var left = a
            try left.merge(b, rules: TestRules())
            try left.merge(c, rules: TestRules())
            var bc = b
            try bc.merge(c, rules: TestRules())
            var right = a
            try right.merge(bc, rules: TestRules())
            #expect(left.stateDigest == right.stateDigest, "seed \(seed)")
        }
    }

    @Test(arguments: chunks)
    func mergeAndDeliveryAreIdempotent(chunk: Int) throws {
        for seed in Self.seeds(chunk) {
            let history = RandomHistory(seed: seed)
            var twice = history.documents[0]
            try twice.merge(history.documents[0], rules: TestRules())
            #expect(twice == history.documents[0], "seed \(seed)")
            let once = history.deliver(history.changes)
            let doubled = history.deliver(history.changes.flatMap { [$0, $0] })
            #expect(once.stateDigest == doubled.stateDigest, "seed \(seed)")
        }
    }

    @Test(arguments: chunks)
    func everyConcurrentRegisterWriteSurvivesAsSibling(chunk: Int) {
        for seed in Self.seeds(chunk) {
            let history = RandomHistory(seed: seed)
            let merged = history.deliver(history.changes)
            for key in RandomHistory.registers {
                // The writes no other write has seen are exactly the siblings (none lost, none invented).
                let writes = history.changes.filter { change in change.ops.contains { $0.field == key } }
                let unseen = writes.filter { write in
                    !writes.contains { $0.dot != write.dot && $0.context.contains(write.dot) }
                }
                guard case .register(let register)? = merged.fields[key] else {
                    #expect(unseen.isEmpty, "seed \(seed)")
                    continue
                }
                #expect(Set(register.siblings.map(\.dot)) == Set(unseen.map(\.dot)), "seed \(seed) \(key)")
            }
        }
    }
}
