import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
import CaseMeshSyncDriver
import Foundation

/// What a simulation may do to the replicas and the network.
public enum SimulationFault: String, CaseIterable, Sendable {
    /// Split the replicas into two groups that cannot sync, then heal.
    case partition
    /// Cut a sync connection after a random number of messages.
    case drop
    /// Deliver changes twice (bundles with repeats).
    case duplicate
    /// Deliver changes out of order (shuffled bundles).
    case reorder
    /// Restart a replica from its store, with changes logged but not yet checkpointed.
    case crash
    /// Put a replica's clock three days ahead.
    case skew
    /// Add and remove participating institutions.
    case membership
    /// Edit cases through a replica's store while its node serves a sync.
    case servingEdits = "serving-edits"
    /// A relay alters a change it passes on, or covers it with its own seal.
    case tamper
    /// Revoke a replica's certificate mid-run (a stolen laptop).
    case revoke
}

/// One simulated run's parameters; the seed decides everything else.
public struct SimulationConfiguration: Sendable {
    public var replicas = 4
    public var cases = 3
    public var steps = 60
    public var seed: UInt64 = 1
    public var faults = Set(SimulationFault.allCases)

    public init() {}
}

/// What a run did and which properties it found broken.
public struct SimulationReport: Sendable {
    public var seed: UInt64
    public var steps = 0
    public var changes = 0
    public var syncs = 0
    public var conflicts = 0
    /// Changes held back at quiescence for a permanent, reported cause (the seals of
    /// a revoked replica, and what waits on them).
    public var heldBack = 0
    public var violations: [String] = []
}

/// A deterministic simulation of several institutions' replicas: each has its own
/// real SQLite store in a temporary directory, its own certificate from the run's
/// consortium CA (``EphemeralAuthority``, with a real signed CRL) and runs the
/// production sync driver, which seals, verifies signers and checks writers as a
/// node does; the network, the clocks and the faults are driven by a seeded
/// generator. (Keys and ECDSA signatures are random, so seal bytes differ between
/// runs of one seed; nothing the driver decides depends on them.) At the
/// end every fault is healed, a full sync runs to quiescence and every property of
/// the Architecture article (CaseMeshNode.docc) that can be checked from outside is checked.
public final class Simulation {
    let configuration: SimulationConfiguration
    let directory: String
    var generator: SeededGenerator
    var stores: [CaseStore] = []
    /// How each replica's node signs its seals and verifies others' certificates.
    var authentications: [SyncDriver.Authentication] = []
    var certificatePaths: [String] = []
    let consortium: SimulatedConsortium
    var clocks: [SimulatedClock] = []
    var institutions: [String] = []
    var caseIDs: [CaseID] = []
    /// Every change a replica committed (acknowledged to its user).
    var acknowledged: [Change] = []
    /// Institutions ever added as participants, per case.
    var everParticipants: [CaseID: Set<String>] = [:]
    var partition: [Int: Int] = [:]
    /// The replica whose certificate was revoked, if one was.
    var revoked: Int?
    /// What the revoked replica wrote after its revocation (accepted nowhere).
    var writtenAfterRevocation: [Change] = []
    var report: SimulationReport
    static let start: UInt64 = 1_763_856_000_000

    public init(configuration: SimulationConfiguration, directory: String) throws {
        self.configuration = configuration
        self.directory = directory
        generator = SeededGenerator(seed: configuration.seed)
        report = SimulationReport(seed: configuration.seed)
        consortium = try SimulatedConsortium(directory: directory + "/ca")
        for index in 0..<configuration.replicas {
            let clock = SimulatedClock(start: Self.start)
            let replica = try ReplicaID("inst\(index).centre/node")
            institutions.append(replica.institution.rawValue)
            clocks.append(clock)
            let member = try consortium.member(replica, directory: directory + "/r\(index)", clock: clock)
            stores.append(member.store)
            certificatePaths.append(member.certificatePath)
            authentications.append(member.authentication)
        }
    }

    /// Replica `index` as one end of a simulated connection.
    func end(_ index: Int) -> SimulatedLink.End {
        SimulatedLink.End(store: stores[index], authentication: authentications[index])
    }

    func has(_ fault: SimulationFault) -> Bool { configuration.faults.contains(fault) }

    func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &generator) < percent }

    func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &generator)] }

    /// The steps this run has executed (or replayed), for a trace.
    public private(set) var trace: [SimulationStep] = []

    /// Runs the steps, heals, syncs to quiescence and checks.
    public func run() async throws -> SimulationReport {
        for _ in 0..<configuration.steps {
            for step in try nextSteps() { try await execute(step) }
            report.steps += 1
        }
        return try await finish()
    }

    /// Runs the given steps instead of generated ones (a trace), then heals and checks.
    public func replay(_ steps: [SimulationStep]) async throws -> SimulationReport {
        for step in steps {
            try await execute(step)
            report.steps += 1
        }
        return try await finish()
    }

    private func finish() async throws -> SimulationReport {
        try await quiesce()
        try await check()
        report.changes = acknowledged.count
        return report
    }

    /// Decides the next step from the seed and the replicas' state.
    private func nextSteps() throws -> [SimulationStep] {
        // Shared time; often it does not move between steps, so concurrent writes on
        // different replicas can carry the very same timestamp (the tie-break case).
        let elapsed = chance(40) ? 0 : UInt64.random(in: 1...2_000, using: &generator)
        let replica = Int.random(in: 0..<stores.count, using: &generator)
        let other = Int.random(in: 0..<stores.count, using: &generator)
        let roll = Int.random(in: 0..<100, using: &generator)
        var step: SimulationStep?
        switch roll {
        case 0..<12 where caseIDs.count < configuration.cases || caseIDs.isEmpty:
            step = .open(replica: replica, participants: stores.indices.filter { $0 != replica && chance(50) })
        case 0..<45:
            if let caseIndex = try participatingCase(replica) {
                step = .edit(replica: replica, caseIndex: caseIndex, operations: randomEdits())
            }
        case 45..<52 where has(.membership):
            if let caseIndex = try participatingCase(replica) {
                step =
                    chance(30)
                    ? .consent(replica: replica, caseIndex: caseIndex, institution: other, grant: chance(50))
                    : .membership(replica: replica, caseIndex: caseIndex, institution: other, add: chance(70))
            }
        case 75..<82 where has(.duplicate) || has(.reorder):
            let size = 64
            var order = Array(0..<size)
            if has(.reorder) { order.shuffle(using: &generator) }
            step = .bundle(
                source: replica, target: other, take: Int.random(in: 1...size, using: &generator),
                repeats: (0..<size).map { _ in has(.duplicate) && chance(30) }, order: order,
                batch: Int.random(in: 1...8, using: &generator))
        case 52..<58 where has(.servingEdits):
            if let caseIndex = try participatingCase(replica) {
                step = .syncWhileEditing(
                    a: chance(50) ? replica : other, b: chance(50) ? other : replica,
                    after: Int.random(in: 0..<10, using: &generator), editor: 0, caseIndex: caseIndex,
                    operations: randomEdits())
            }
        case 58..<62 where has(.tamper):
            step = .relaySync(a: replica, b: other, resign: chance(50))
        case 95..<97 where has(.revoke) && revoked == nil && stores.count > 2:
            step = .revoke(replica: replica)
        case 82..<87 where has(.partition):
            step = .partition(groups: partition.isEmpty ? stores.indices.map { _ in chance(50) ? 1 : 0 } : [])
        case 87..<92 where has(.crash):
            step = .crash(replica: replica)
        case 92..<95 where has(.skew):
            step = .skew(replica: replica, milliseconds: chance(50) ? 3 * 86_400_000 : 0)
        default:
            let cut = has(.drop) && chance(25) ? Int.random(in: 0..<12, using: &generator) : nil
            step = .sync(a: replica, b: other, cutAfter: cut)
        }
        return [.advance(milliseconds: elapsed)] + (step.map { [$0] } ?? [])
    }

    private func randomEdits() -> [SimulationStep.Edit] {
        (0..<Int.random(in: 1...3, using: &generator)).map { _ in
            switch Int.random(in: 0..<6, using: &generator) {
            case 0: .init(kind: "riskLevel", argument: pick(["low", "medium", "high", "crisis"]))
            case 1: .init(kind: "stage", argument: pick(["intake", "assessment", "planning"]))
            case 2: .init(kind: "tag+", argument: pick(["isolation", "meals", "debt"]))
            case 3: .init(kind: "tag-", argument: pick(["isolation", "meals", "debt"]))
            case 4: .init(kind: "household.size", argument: String(Int.random(in: 1...5, using: &generator)))
            default: .init(kind: "note", argument: "visit \(report.steps)")
            }
        }
    }

    /// Carries out one step; a step that no longer applies does nothing.
    func execute(_ step: SimulationStep) async throws {
        trace.append(step)
        let count = stores.count
        func valid(_ indices: Int...) -> Bool { indices.allSatisfy { (0..<count).contains($0) } }
        switch step {
        case .advance(let milliseconds):
            for clock in clocks { clock.advance(by: milliseconds) }
        case .open(let replica, let participants):
            guard valid(replica) else { return }
            var ops: [FieldOperation] = [.assign(CaseField.riskLevel, .string("high"))]
            // Sharing a case records a consent for the institutions it is shared with;
            // the harness is about merging, so consent is always granted with
            // participation and only participation comes and goes.
            let shared = try participants.filter { valid($0) && $0 != replica }.map {
                try InstitutionID(institutions[$0])
            }
            if !shared.isEmpty { ops += ConsentGrant(recipients: shared).ops() }
            try commit(replica) { store in
                let change = try store.openCase(ops: ops, using: &generator)
                caseIDs.append(change.caseID)
                return change
            }
        case .edit(let replica, let caseIndex, let operations):
            guard valid(replica), caseIDs.indices.contains(caseIndex) else { return }
            try edit(replica, caseIndex, operations)
        case .membership(let replica, let caseIndex, let institution, let add):
            guard valid(replica, institution), caseIDs.indices.contains(caseIndex), add || institution != replica else {
                return
            }
            let ops: [FieldOperation] =
                add
                ? ConsentGrant(recipients: [try InstitutionID(institutions[institution])]).ops()
                : [.remove(Self.participants, institutions[institution])]
            try commitIfParticipating(replica, caseIndex) { try $0.write(caseID: self.caseIDs[caseIndex], ops: ops) }
        case .consent(let replica, let caseIndex, let institution, let grant):
            guard valid(replica, institution), caseIDs.indices.contains(caseIndex) else { return }
            let recipient = try InstitutionID(institutions[institution])
            let ops =
                grant
                ? ConsentGrant(recipients: [recipient]).ops(addingParticipants: false)
                : [ConsentGrant(recipients: []).withdrawal(from: recipient)]
            try commitIfParticipating(replica, caseIndex) { try $0.write(caseID: self.caseIDs[caseIndex], ops: ops) }
        case .sync(let a, let b, let cutAfter):
            guard valid(a, b), a != b, connected(a, b) else { return }
            _ = try await SimulatedLink.sync(end(a), end(b), cutAfter: cutAfter)
            report.syncs += 1
        case .syncWhileEditing(let a, let b, let after, let editor, let caseIndex, let operations):
            guard valid(a, b), a != b, connected(a, b), caseIDs.indices.contains(caseIndex) else { return }
            let writer = editor == 0 ? a : b
            _ = try await SimulatedLink.sync(end(a), end(b), cutAfter: nil) { delivered in
                if delivered == after { try self.edit(writer, caseIndex, operations) }
            }
            report.syncs += 1
        case .relaySync(let a, let b, let resign):
            guard valid(a, b), a != b, connected(a, b) else { return }
            _ = try await SimulatedLink.sync(end(a), end(b), cutAfter: nil, tamper: resign ? .resign : .alter)
            report.syncs += 1
        case .revoke(let replica):
            guard valid(replica), revoked == nil else { return }
            try consortium.authority.revoke(certificateAt: certificatePaths[replica])
            revoked = replica
        case .bundle(let source, let target, let take, let repeats, let order, let batch):
            // A bundle is a file carried by hand: a revoked laptop can still make one
            // (and every importer refuses its seals), but is given none.
            guard valid(source, target), source != target,
                partition[source, default: 0] == partition[target, default: 0],
                revoked != target
            else { return }
            try await deliverBundle(
                from: source, to: target, take: take, repeats: repeats, order: order, batch: batch)
        case .partition(let groups):
            partition.removeAll()
            for (index, group) in groups.enumerated() where valid(index) { partition[index] = group }
        case .crash(let replica):
            guard valid(replica) else { return }
            try await crash(replica)
        case .skew(let replica, let milliseconds):
            guard valid(replica) else { return }
            clocks[replica].setSkew(milliseconds)
        }
    }

    /// A replica's edit of a case it takes part in, as its user would make it.
    func edit(_ replica: Int, _ caseIndex: Int, _ operations: [SimulationStep.Edit]) throws {
        let ops: [FieldOperation] = operations.map { edit in
            switch edit.kind {
            case "riskLevel", "stage": .assign(FieldKey(entity: "case", field: edit.kind), .string(edit.argument))
            case "tag+": .insert(CaseField.tags, edit.argument)
            case "tag-": .remove(CaseField.tags, edit.argument)
            case "household.size":
                .assign(FieldKey(entity: "household", field: "size"), .integer(Int64(edit.argument) ?? 1))
            default: .append(CaseField.notes, edit.argument)
            }
        }
        try commitIfParticipating(replica, caseIndex) { try $0.write(caseID: self.caseIDs[caseIndex], ops: ops) }
    }

    private func commit(_ replica: Int, _ body: (CaseStore) throws -> Change) throws {
        do {
            let change = try body(stores[replica])
            acknowledged.append(change)
            if replica == revoked { writtenAfterRevocation.append(change) }
            for case .insert(let field, let element) in change.ops where field == Self.participants {
                everParticipants[change.caseID, default: []].insert(element)
            }
        } catch let error as StoreError where error.code == .invalidWrite || error.code == .caseNotFound {
            // A refused write is not acknowledged; nothing to track.
        }
    }

    /// Commits only when the replica holds the case and its institution takes part.
    private func commitIfParticipating(_ replica: Int, _ caseIndex: Int, _ body: (CaseStore) throws -> Change) throws {
        guard let summary = try stores[replica].caseSummaries().first(where: { $0.caseID == caseIDs[caseIndex] }),
            summary.participants.contains(institutions[replica])
        else { return }
        try commit(replica, body)
    }

    static let participants = CaseField.participants

    /// The index of a case the replica holds and takes part in, if any.
    private func participatingCase(_ replica: Int) throws -> Int? {
        let held = try stores[replica].caseSummaries().filter { $0.participants.contains(institutions[replica]) }
        guard !held.isEmpty else { return nil }
        return caseIDs.firstIndex(of: pick(held).caseID)
    }

    /// Whether two replicas can sync: the same side of a partition, and neither
    /// revoked (its certificate no longer passes the TLS handshake).
    private func connected(_ a: Int, _ b: Int) -> Bool {
        partition[a, default: 0] == partition[b, default: 0] && revoked != a && revoked != b
    }

    /// Restarts a replica: it first logs a batch from a peer without checkpointing,
    /// as if killed right after, then reopens its store with a cold cache.
    private func crash(_ replica: Int) async throws {
        let peer = (replica + 1) % stores.count
        if connected(replica, peer) {
            // A page as the peer's driver would serve it, sealed, checked as the
            // replica's driver would check it.
            try stores[peer].sealOwnChanges(sign: authentications[peer].sign)
            let page = try stores[peer].logPage(
                from: 1, for: try InstitutionID(institutions[replica]), sealedOnly: true)
            let verdict = try await SignerTrust.check(
                store: stores[replica], offered: page.certificates, signers: Set(page.seals.map(\.origin)),
                verify: authentications[replica].verifyCertificate)
            _ = try stores[replica].applyPulled(
                page.changes, from: stores[peer].replicaID, logIdentity: "crash-\(report.steps)", nextCursor: 1,
                checkpoint: false,
                authentication: PulledSeals(
                    leaves: page.leaves, seals: page.seals, certificates: page.certificates,
                    distrusted: verdict.distrusted))
        }
        let before = try snapshots(ofAll: replica)
        stores[replica] = try CaseStore.open(directory: directory + "/r\(replica)", clock: clocks[replica])
        if try snapshots(ofAll: replica) != before {
            report.violations.append("step \(report.steps): replica \(replica) shows different cases after a restart")
        }
    }

    /// Heals every fault and syncs every pair until a round moves nothing.
    private func quiesce() async throws {
        partition.removeAll()
        for clock in clocks {
            clock.setSkew(0)
            // Time passes beyond any skew, so every timestamp is acceptable now.
            clock.advance(by: 4 * 86_400_000)
        }
        for store in stores { try store.forgetPullCursors() }
        for round in 0..<12 {
            var moved = 0
            for a in stores.indices {
                for b in stores.indices where a < b && connected(a, b) {
                    let result = try await SimulatedLink.sync(end(a), end(b), cutAfter: nil)
                    report.syncs += 1
                    moved += result.changesMoved
                    if !result.finished { report.violations.append("final sync \(a)–\(b) did not finish") }
                }
            }
            if moved == 0 && round > 0 { return }
        }
        report.violations.append("no quiescence after 12 full rounds")
    }
}

extension Simulation {
    /// Delivers what the source holds for the target's institution as a sealed
    /// bundle, the way `changes export` and `changes import --ca` do: the last
    /// `take` changes, each repeated if its bit in `repeats` is set, in the order
    /// given by `order`, applied `batch` at a time.
    func deliverBundle(from source: Int, to target: Int, take: Int, repeats: [Bool], order: [Int], batch: Int)
        async throws
    {
        try stores[source].sealOwnChanges(sign: authentications[source].sign)
        let page = try stores[source].exportPage(for: try InstitutionID(institutions[target]))
        guard !page.changes.isEmpty else { return }
        let chosen = Array(page.changes.indices.suffix(min(max(1, take), page.changes.count)))
        var delivered: [(change: Change, body: [UInt8])] = []
        var leaves: [SealLeaf?] = []
        for position in order where chosen.indices.contains(position) {
            let index = chosen[position]
            let copies = repeats.indices.contains(position) && repeats[position] ? 2 : 1
            for _ in 0..<copies {
                delivered.append((page.changes[index], page.changes[index].encoded()))
                leaves.append(page.leaves.indices.contains(index) ? page.leaves[index] : nil)
            }
        }
        let verdict = try await SignerTrust.check(
            store: stores[target], offered: page.certificates, signers: Set(page.seals.map(\.origin)),
            verify: authentications[target].verifyCertificate)
        _ = try stores[target].apply(
            delivered, batchSize: max(1, batch),
            authentication: BundleSeals(
                leaves: leaves, seals: page.seals, sender: stores[source].replicaID, certificates: page.certificates,
                distrusted: verdict.distrusted))
        // As `changes import` does: the bundle may end the target's right to a case.
        try stores[target].purgeUnentitledCases()
    }
}
