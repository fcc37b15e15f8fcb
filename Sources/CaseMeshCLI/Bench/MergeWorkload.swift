import CaseMeshCRDT
import CaseMeshModel

/// The merge benchmark's workload: C cases × F register fields seeded with "init",
/// then R replicas each making U updates to random (case, field) pairs, every update
/// its own change with the causal context its replica had.
struct MergeWorkload {
    struct Update {
        var caseIndex: Int
        var fieldIndex: Int
        var change: Change
    }

    let caseIDs: [CaseID]
    let fields: [FieldKey]
    let seedOrigin: ReplicaID
    let replicas: [ReplicaID]
    /// One opening change per case, from the seed origin.
    let seedChanges: [Change]
    /// Each replica's updates, in the order it made them.
    let updates: [[Update]]
    /// The simulated wall clock after the last update.
    let endMillis: UInt64

    static let startMillis: UInt64 = 1_763_856_000_000

    /// The first `count` string register fields of the schema, one instance each.
    static func registerFields(_ schema: CaseSchema, count: Int) throws -> [FieldKey] {
        var keys: [FieldKey] = []
        for entity in schema.entities.values.sorted(by: { $0.name < $1.name }) {
            // Consent fields decide who receives a case, and the lead, a handover offer and a
            // referral's answer may be written only by the institution whose role it is
            // (every receiver refuses the rest): a workload of random writes leaves them alone.
            guard entity.name != "consent", entity.name != "referral" else { continue }
            for field in entity.fields where field.kind == .register && (field.type == .string || field.type == .text) {
                let key = FieldKey(entity: entity.name, instance: entity.multiple ? "b1" : "", field: field.name)
                if key != CaseField.leadInstitution && key != CaseField.handoverOffer { keys.append(key) }
            }
        }
        guard keys.count >= count else {
            throw CLIError(message: "the schema has \(keys.count) text register fields; --fields must be at most that")
        }
        return Array(keys.prefix(count))
    }

    init(cases: Int, fieldCount: Int, updatesPerReplica: Int, replicaCount: Int, seed: UInt64, schema: CaseSchema)
        throws
    {
        var generator = SeededGenerator(seed: seed)
        fields = try Self.registerFields(schema, count: fieldCount)
        caseIDs = (0..<cases).map { _ in CaseID.random(using: &generator) }
        seedOrigin = try ReplicaID("bench.seed/node")
        replicas = try (0..<replicaCount).map { try ReplicaID("bench.replica-\($0)/node") }
        var wall = Self.startMillis
        var seedClock = HybridLogicalClock()
        let fields = fields
        seedChanges = caseIDs.map { caseID in
            // The seed opens every case with all the replicas' institutions taking part.
            var ops: [FieldOperation] = [.insert(CaseField.participants, "bench.seed")]
            ops += (0..<replicaCount).map {
                .insert(CaseField.participants, "bench.replica-\($0)")
            }
            ops += fields.map { .assign($0, .string("init")) }
            return Change(
                caseID: caseID, origin: try! ReplicaID("bench.seed/node"), seq: 1,
                hlc: seedClock.tick(wallMillis: wall),
                context: VersionVector(), ops: ops)
        }
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        var updates: [[Update]] = []
        for replica in replicas {
            var clock = HybridLogicalClock(latest: seedClock.latest)
            var sequences = [UInt64](repeating: 0, count: cases)
            var made: [Update] = []
            made.reserveCapacity(updatesPerReplica)
            for _ in 0..<updatesPerReplica {
                wall += 1
                let caseIndex = Int.random(in: 0..<cases, using: &generator)
                let fieldIndex = Int.random(in: 0..<fieldCount, using: &generator)
                let value = String(
                    decoding: (0..<24).map { _ in alphabet.randomElement(using: &generator)! }, as: UTF8.self)
                sequences[caseIndex] += 1
                let seq = sequences[caseIndex]
                let change = Change(
                    caseID: caseIDs[caseIndex], origin: replica, seq: seq, hlc: clock.tick(wallMillis: wall),
                    context: VersionVector([seedOrigin: 1, replica: seq - 1]),
                    ops: [.assign(fields[fieldIndex], .string(value))])
                made.append(Update(caseIndex: caseIndex, fieldIndex: fieldIndex, change: change))
            }
            updates.append(made)
        }
        self.updates = updates
        endMillis = wall
    }
}
