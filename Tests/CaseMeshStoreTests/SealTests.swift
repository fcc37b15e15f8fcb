import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
import CaseMeshTestSupport
import Crypto
import Foundation
import GRDB
import Testing

/// Seals at the store: what a receiver applies and what it quarantines.
@Suite struct SealTests {
    let dong = try! ReplicaID("dong.office/server")
    let senior = try! ReplicaID("senior.centre/server")
    let dongKey = P256.Signing.PrivateKey()

    /// The dong centre's store with a shared case, sealed; and the page it serves.
    func served() throws -> (origin: CaseStore, page: LogPage, caseID: CaseID) {
        let origin = try CaseStore.inMemory(replicaID: dong)
        var generator = SeededGenerator(seed: 3)
        let opened = try origin.openCase(ops: [.assign(Entitlement.lead, .string("dong.office"))], using: &generator)
        try origin.write(caseID: opened.caseID, ops: ConsentGrant(recipients: [senior.institution]).ops())
        try origin.write(caseID: opened.caseID, ops: [.append(FieldKey(entity: "case", field: "notes"), "visit")])
        let key = dongKey
        #expect(try origin.sealOwnChanges(sign: { Array(try key.signature(for: $0).rawRepresentation) }) == 3)
        #expect(
            try origin.sealOwnChanges(sign: { _ in
                Issue.record("nothing new to seal"); return []
            }) == 0)
        return (origin, try origin.logPage(from: 1, for: senior.institution), opened.caseID)
    }

    func receiver(trusting key: P256.Signing.PublicKey?) throws -> CaseStore {
        let store = try CaseStore.inMemory(replicaID: senior)
        if let key { try store.trustSigner(dong, publicKey: Array(key.rawRepresentation), certificate: [1, 2, 3]) }
        return store
    }

    func pull(_ page: LogPage, into store: CaseStore, seals: [Seal]? = nil, leaves: [SealLeaf?]? = nil) throws
        -> ApplyReport
    {
        try store.applyPulled(
            page.changes, from: dong, logIdentity: "x", nextCursor: page.nextCursor, checkpoint: true,
            authentication: PulledSeals(leaves: leaves ?? page.leaves, seals: seals ?? page.seals))
    }

    /// The leaf read from the received bytes equals the one built from the change,
    /// for every kind of operation, withheld ones included.
    @Test func leavesFromBytesMatchLeavesFromChanges() throws {
        let typed = Change(
            caseID: try CaseID("case-0123456789abcdefghjkmnpqrs"), origin: dong, seq: 1,
            hlc: HybridTimestamp(physical: 1_700_000_000_000), context: VersionVector(),
            ops: [
                .assign(try FieldKey(parsing: "household.size"), .integer(-3)),
                .assign(try FieldKey(parsing: "person#p1.disability"), .boolean(true)),
            ])
        #expect(try SealDigest.leaf(ofEncoded: typed.encoded()) == SealDigest.leaf(of: typed))
        for seed in UInt64(0)..<40 {
            for var change in RandomHistory(seed: seed, steps: 25).changes {
                #expect(try SealDigest.leaf(ofEncoded: change.encoded()) == SealDigest.leaf(of: change))
                change.ops[0] = .withheld(change.ops[0].field, digest: SealDigest.operation(change.ops[0]))
                #expect(try SealDigest.leaf(ofEncoded: change.encoded()) == SealDigest.leaf(of: change))
            }
        }
    }

    @Test func aValidSealApplies() throws {
        let (origin, page, caseID) = try served()
        #expect(page.seals.count == 1 && page.seals[0].digests.isEmpty, "the whole seal travels, no digests")
        let store = try receiver(trusting: dongKey.publicKey)
        let report = try pull(page, into: store)
        #expect(report.applied == 3 && report.rejected.isEmpty)
        #expect(try store.snapshot(of: caseID) == origin.snapshot(of: caseID))
        #expect(try store.quarantined().isEmpty)
    }

    @Test func anUnknownSignerAnUnsignedChangeAndAnAlteredOneAreQuarantined() throws {
        let (_, page, caseID) = try served()
        // Nobody vouched for the dong centre's certificate.
        let stranger = try receiver(trusting: nil)
        #expect(try pull(page, into: stranger).applied == 0)
        #expect(try stranger.quarantined().map(\.reason).allSatisfy { $0.contains("no verified certificate") })
        // Changes without seals.
        let unsigned = try receiver(trusting: dongKey.publicKey)
        #expect(try pull(page, into: unsigned, seals: [], leaves: []).applied == 0)
        #expect(try unsigned.quarantined().count == 3)
        #expect(try unsigned.quarantined().allSatisfy { $0.reason == "not signed by its origin" })
        // One change altered in transit: its seal no longer verifies, so none of it applies.
        var altered = page
        altered.changes[2].ops = [.append(FieldKey(entity: "case", field: "notes"), "forged")]
        let victim = try receiver(trusting: dongKey.publicKey)
        #expect(try pull(altered, into: victim).applied == 0)
        #expect(throws: StoreError.self) { try victim.snapshot(of: caseID) }
        #expect(try victim.quarantined().allSatisfy { $0.reason.contains("signature") })
        // A seal signed by another key (a relay re-signing) does not verify either.
        var forged = page
        let relayKey = P256.Signing.PrivateKey()
        let leaves = page.changes.map { SealDigest.leaf(of: $0) }
        forged.seals[0].signature = Array(
            try relayKey.signature(for: Seal.message(origin: dong, number: page.seals[0].number, leaves: leaves))
                .rawRepresentation)
        let other = try receiver(trusting: dongKey.publicKey)
        #expect(try pull(forged, into: other).applied == 0)
        // A malformed seal (a leaf beyond its size) is refused, not a crash.
        let malformed = try receiver(trusting: dongKey.publicKey)
        #expect(try pull(page, into: malformed, leaves: [SealLeaf(seal: 0, leaf: 9), nil, nil]).applied == 0)
    }

    /// A forged copy holds the pull cursor (the genuine copy comes next time, and
    /// the sender does not count it delivered), keeps no body (it carries the
    /// household's data), and is closed when the genuine copy applies.
    @Test func aForgedCopyHoldsTheCursorKeepsNoBodyAndTheGenuineOneResolvesIt() throws {
        let (origin, page, caseID) = try served()
        let directory = NSTemporaryDirectory() + "casemesh-seal-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try CaseStore.create(directory: directory, replicaID: senior)
        try store.trustSigner(dong, publicKey: Array(dongKey.publicKey.rawRepresentation), certificate: [1, 2, 3])
        var altered = page
        altered.changes[2].ops = [.append(FieldKey(entity: "case", field: "notes"), "forged")]
        let refused = try pull(altered, into: store)
        #expect(refused.applied == 0 && refused.cursorHeld && refused.durableCursor == 1)
        #expect(try store.pullCursor(for: dong).cursor == 1)
        let bodies = try DatabaseQueue(path: directory + "/" + CaseStore.databaseFileName).read { db in
            try Int.fetchAll(db, sql: "SELECT length(body) FROM quarantine")
        }
        #expect(bodies.count == 3 && bodies.allSatisfy { $0 == 0 })
        let genuine = try pull(page, into: store)
        #expect(genuine.applied == 3 && !genuine.cursorHeld)
        #expect(try store.snapshot(of: caseID) == origin.snapshot(of: caseID))
        #expect(try store.quarantined().isEmpty, "every entry resolved by its genuine copy")
    }

    /// A bundle that carries one change twice still verifies (one leaf, twice).
    @Test func aBundleRepeatingAChangeStillVerifies() throws {
        let (origin, page, caseID) = try served()
        let store = try receiver(trusting: dongKey.publicKey)
        let repeated = [0, 1, 1, 2, 0].map { (page.changes[$0], page.changes[$0].encoded()) }
        let report = try store.apply(
            repeated,
            authentication: BundleSeals(
                leaves: [0, 1, 1, 2, 0].map { page.leaves[$0] }, seals: page.seals, sender: dong))
        #expect(report.applied == 3 && report.rejected.isEmpty)
        #expect(try store.snapshot(of: caseID) == origin.snapshot(of: caseID))
        // Two different changes under one leaf are still refused.
        var forged = page.changes[1]
        forged.ops = [.append(FieldKey(entity: "case", field: "notes"), "forged")]
        let other = try receiver(trusting: dongKey.publicKey)
        let mixed = try other.apply(
            [
                (page.changes[0], page.changes[0].encoded()), (page.changes[1], page.changes[1].encoded()),
                (forged, forged.encoded()), (page.changes[2], page.changes[2].encoded()),
            ],
            authentication: BundleSeals(
                leaves: [page.leaves[0], page.leaves[1], page.leaves[1], page.leaves[2]], seals: page.seals,
                sender: dong))
        #expect(mixed.applied == 0)
    }
}
