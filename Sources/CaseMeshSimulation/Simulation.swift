import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
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
    public var violations: [String] = []
}

/// A deterministic simulation of several institutions' replicas: each has its own
/// real SQLite store in a temporary directory and runs the real sync session logic;
/// the network, the clocks and the faults are driven by a seeded generator. At the
/// end every fault is healed, a full sync runs to quiescence and every property of
/// DESIGN.md §2 that can be checked from outside is checked.
public final class Simulation {
    let configuration: SimulationConfiguration
    let directory: String
    var generator: SeededGenerator
    var stores: [CaseStore] = []
    var clocks: [SimulatedClock] = []
    var institutions: [String] = []
    var caseIDs: [CaseID] = []
    /// Every change a replica committed (acknowledged to its user).
    var acknowledged: [Change] = []
    /// Institutions ever added as participants, per case.
    var everParticipants: [CaseID: Set<String>] = [:]
    var partition: [Int: Int] = [:]
    var report: SimulationReport
    static let start: UInt64 = 1_763_856_000_000

    public init(configuration: SimulationConfiguration, directory: String) throws {
        self.configuration = configuration
        self.directory = directory
        generator = SeededGenerator(seed: configuration.seed)
        report = SimulationReport(seed: configuration.seed)
        for index in 0..<configuration.replicas {
            let clock = SimulatedClock(start: Self.start)
            let replica = try ReplicaID("inst\(index).centre/node")
            institutions.append(replica.institution.rawValue)
            clocks.append(clock)
            stores.append(try CaseStore.create(directory: directory + "/r\(index)", replicaID: replica, clock: clock))
        }
    }

    func has(_ fault: SimulationFault) -> Bool { configuration.faults.contains(fault) }

    func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &generator) < percent }

    func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &generator)] }

    /// Runs the steps, heals, syncs to quiescence and checks.
    public func run() throws -> SimulationReport {
        for _ in 0..<configuration.steps {
            try step()
            report.steps += 1
        }
        try quiesce()
        try check()
        report.changes = acknowledged.count
        return report
    }

    private func step() throws {
        // Shared time; often it does not move between steps, so concurrent writes on
        // different replicas can carry the very same timestamp (the tie-break case).
        let elapsed = chance(40) ? 0 : UInt64.random(in: 1...2_000, using: &generator)
        for clock in clocks { clock.advance(by: elapsed) }
        let roll = Int.random(in: 0..<100, using: &generator)
        switch roll {
        case 0..<12 where caseIDs.count < configuration.cases || caseIDs.isEmpty: try openCase()
        case 0..<45: try edit()
        case 45..<52 where has(.membership): try changeMembership()
        case 52..<75: try syncPair()
        case 75..<82 where has(.duplicate) || has(.reorder): try deliverBundle()
        case 82..<87 where has(.partition): splitOrHeal()
        case 87..<92 where has(.crash): try crash()
        case 92..<95 where has(.skew): skewAClock()
        default: try syncPair()
        }
    }

    private func commit(_ replica: Int, _ body: (CaseStore) throws -> Change) throws {
        do {
            let change = try body(stores[replica])
            acknowledged.append(change)
            for case .insert(let field, let element) in change.ops where field == Self.participants {
                everParticipants[change.caseID, default: []].insert(element)
            }
        } catch let error as StoreError where error.code == .invalidWrite || error.code == .caseNotFound {
            // A refused write is not acknowledged; nothing to track.
        }
    }

    static let participants = FieldKey(entity: "case", field: "participants")

    private func openCase() throws {
        let replica = Int.random(in: 0..<stores.count, using: &generator)
        var ops: [FieldOperation] = [.assign(FieldKey(entity: "case", field: "riskLevel"), .string("high"))]
        for (index, institution) in institutions.enumerated() where index != replica && chance(50) {
            ops.append(.insert(Self.participants, institution))
        }
        try commit(replica) { store in
            let change = try store.openCase(ops: ops, using: &generator)
            caseIDs.append(change.caseID)
            return change
        }
    }

    /// A case the replica holds and takes part in, if any.
    private func participatingCase(_ replica: Int) throws -> CaseID? {
        let held = try stores[replica].caseSummaries().filter { $0.participants.contains(institutions[replica]) }
        return held.isEmpty ? nil : pick(held).caseID
    }

    private func edit() throws {
        let replica = Int.random(in: 0..<stores.count, using: &generator)
        guard let caseID = try participatingCase(replica) else { return }
        var ops: [FieldOperation] = []
        for _ in 0..<Int.random(in: 1...3, using: &generator) {
            switch Int.random(in: 0..<6, using: &generator) {
            case 0:
                ops.append(
                    .assign(
                        FieldKey(entity: "case", field: "riskLevel"),
                        .string(pick(["low", "medium", "high", "crisis"]))))
            case 1:
                ops.append(
                    .assign(
                        FieldKey(entity: "case", field: "stage"), .string(pick(["intake", "assessment", "planning"]))))
            case 2: ops.append(.insert(FieldKey(entity: "case", field: "tags"), pick(["isolation", "meals", "debt"])))
            case 3: ops.append(.remove(FieldKey(entity: "case", field: "tags"), pick(["isolation", "meals", "debt"])))
            case 4:
                ops.append(
                    .assign(
                        FieldKey(entity: "household", field: "size"),
                        .integer(Int64.random(in: 1...5, using: &generator))))
            default: ops.append(.append(FieldKey(entity: "case", field: "notes"), "visit \(report.steps)"))
            }
        }
        try commit(replica) { try $0.write(caseID: caseID, ops: ops) }
    }

    private func changeMembership() throws {
        let replica = Int.random(in: 0..<stores.count, using: &generator)
        guard let caseID = try participatingCase(replica) else { return }
        let other = pick(institutions)
        let op: FieldOperation = chance(70) ? .insert(Self.participants, other) : .remove(Self.participants, other)
        if case .remove(_, let element) = op, element == institutions[replica] { return }
        try commit(replica) { try $0.write(caseID: caseID, ops: [op]) }
    }

    private func connected(_ a: Int, _ b: Int) -> Bool { partition[a, default: 0] == partition[b, default: 0] }

    private func syncPair() throws {
        let a = Int.random(in: 0..<stores.count, using: &generator)
        let b = Int.random(in: 0..<stores.count, using: &generator)
        guard a != b, connected(a, b) else { return }
        let cut = has(.drop) && chance(25) ? Int.random(in: 0..<12, using: &generator) : nil
        _ = try SimulatedLink.sync(stores[a], stores[b], cutAfter: cut)
        report.syncs += 1
    }

    private func deliverBundle() throws {
        let source = Int.random(in: 0..<stores.count, using: &generator)
        let target = Int.random(in: 0..<stores.count, using: &generator)
        guard source != target, connected(source, target) else { return }
        let institution = try InstitutionID(institutions[target])
        var changes = try stores[source].encodedChanges(for: institution).map { try Change(decoding: $0) }
        guard !changes.isEmpty else { return }
        changes = Array(changes.suffix(Int.random(in: 1...changes.count, using: &generator)))
        if has(.duplicate) { changes += changes.filter { _ in chance(30) } }
        if has(.reorder) { changes.shuffle(using: &generator) }
        _ = try stores[target].apply(changes, batchSize: Int.random(in: 1...8, using: &generator))
    }

    private func splitOrHeal() {
        if partition.isEmpty {
            for index in stores.indices { partition[index] = chance(50) ? 1 : 0 }
        } else {
            partition.removeAll()
        }
    }

    /// Restarts a replica: it first logs a batch from a peer without checkpointing,
    /// as if killed right after, then reopens its store with a cold cache.
    private func crash() throws {
        let replica = Int.random(in: 0..<stores.count, using: &generator)
        let peer = (replica + 1) % stores.count
        if connected(replica, peer) {
            let page = try stores[peer].logPage(from: 1, for: try InstitutionID(institutions[replica]))
            _ = try stores[replica].applyPulled(
                page.changes, from: stores[peer].replicaID, logIdentity: "crash-\(report.steps)", nextCursor: 1,
                checkpoint: false)
        }
        let before = try snapshots(ofAll: replica)
        stores[replica] = try CaseStore.open(directory: directory + "/r\(replica)", clock: clocks[replica])
        if try snapshots(ofAll: replica) != before {
            report.violations.append("step \(report.steps): replica \(replica) shows different cases after a restart")
        }
    }

    private func skewAClock() {
        let replica = Int.random(in: 0..<stores.count, using: &generator)
        clocks[replica].setSkew(chance(50) ? 3 * 86_400_000 : 0)
    }

    /// Heals every fault and syncs every pair until a round moves nothing.
    private func quiesce() throws {
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
                for b in stores.indices where a < b {
                    let result = try SimulatedLink.sync(stores[a], stores[b], cutAfter: nil)
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
