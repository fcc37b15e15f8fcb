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
/// the Architecture article (CaseMeshNode.docc) that can be checked from outside is checked.
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

    /// The steps this run has executed (or replayed), for a trace.
    public private(set) var trace: [SimulationStep] = []

    /// Runs the steps, heals, syncs to quiescence and checks.
    public func run() throws -> SimulationReport {
        for _ in 0..<configuration.steps {
            for step in try nextSteps() { try execute(step) }
            report.steps += 1
        }
        return try finish()
    }

    /// Runs the given steps instead of generated ones (a trace), then heals and checks.
    public func replay(_ steps: [SimulationStep]) throws -> SimulationReport {
        for step in steps {
            try execute(step)
            report.steps += 1
        }
        return try finish()
    }

    private func finish() throws -> SimulationReport {
        try quiesce()
        try check()
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
    func execute(_ step: SimulationStep) throws {
        trace.append(step)
        let count = stores.count
        func valid(_ indices: Int...) -> Bool { indices.allSatisfy { (0..<count).contains($0) } }
        switch step {
        case .advance(let milliseconds):
            for clock in clocks { clock.advance(by: milliseconds) }
        case .open(let replica, let participants):
            guard valid(replica) else { return }
            var ops: [FieldOperation] = [.assign(FieldKey(entity: "case", field: "riskLevel"), .string("high"))]
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
            let ops: [FieldOperation] = operations.map { edit in
                switch edit.kind {
                case "riskLevel", "stage": .assign(FieldKey(entity: "case", field: edit.kind), .string(edit.argument))
                case "tag+": .insert(FieldKey(entity: "case", field: "tags"), edit.argument)
                case "tag-": .remove(FieldKey(entity: "case", field: "tags"), edit.argument)
                case "household.size":
                    .assign(FieldKey(entity: "household", field: "size"), .integer(Int64(edit.argument) ?? 1))
                default: .append(FieldKey(entity: "case", field: "notes"), edit.argument)
                }
            }
            try commitIfParticipating(replica, caseIndex) { try $0.write(caseID: self.caseIDs[caseIndex], ops: ops) }
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
            _ = try SimulatedLink.sync(stores[a], stores[b], cutAfter: cutAfter)
            report.syncs += 1
        case .bundle(let source, let target, let take, let repeats, let order, let batch):
            guard valid(source, target), source != target, connected(source, target) else { return }
            let institution = try InstitutionID(institutions[target])
            let held = try stores[source].encodedChanges(for: institution).map { try Change(decoding: $0) }
            guard !held.isEmpty else { return }
            let chosen = Array(held.suffix(min(max(1, take), held.count)))
            var delivered: [Change] = []
            for position in order where chosen.indices.contains(position) {
                delivered.append(chosen[position])
                if repeats.indices.contains(position) && repeats[position] { delivered.append(chosen[position]) }
            }
            _ = try stores[target].apply(delivered, batchSize: max(1, batch))
            // As `changes import` does: the bundle may end the target's right to a case.
            try stores[target].purgeUnentitledCases()
        case .partition(let groups):
            partition.removeAll()
            for (index, group) in groups.enumerated() where valid(index) { partition[index] = group }
        case .crash(let replica):
            guard valid(replica) else { return }
            try crash(replica)
        case .skew(let replica, let milliseconds):
            guard valid(replica) else { return }
            clocks[replica].setSkew(milliseconds)
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

    /// Commits only when the replica holds the case and its institution takes part.
    private func commitIfParticipating(_ replica: Int, _ caseIndex: Int, _ body: (CaseStore) throws -> Change) throws {
        guard let summary = try stores[replica].caseSummaries().first(where: { $0.caseID == caseIDs[caseIndex] }),
            summary.participants.contains(institutions[replica])
        else { return }
        try commit(replica, body)
    }

    static let participants = FieldKey(entity: "case", field: "participants")

    /// The index of a case the replica holds and takes part in, if any.
    private func participatingCase(_ replica: Int) throws -> Int? {
        let held = try stores[replica].caseSummaries().filter { $0.participants.contains(institutions[replica]) }
        guard !held.isEmpty else { return nil }
        return caseIDs.firstIndex(of: pick(held).caseID)
    }

    private func connected(_ a: Int, _ b: Int) -> Bool { partition[a, default: 0] == partition[b, default: 0] }

    /// Restarts a replica: it first logs a batch from a peer without checkpointing,
    /// as if killed right after, then reopens its store with a cold cache.
    private func crash(_ replica: Int) throws {
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
