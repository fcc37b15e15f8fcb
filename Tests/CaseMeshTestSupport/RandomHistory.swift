public import CaseMeshCRDT
public import CaseMeshModel

/// Merge rules for the law tests: fields named `rw…` are remove-wins sets.
public struct TestRules: MergeRules {
    public init() {}

    public func setSemantics(for field: FieldKey) -> SetSemantics {
        field.field.hasPrefix("rw") ? .removeWins : .addWins
    }
}

/// Random concurrent histories of one case among several replicas that edit offline
/// and sync now and then, with a simulated wall clock. Small field and element pools
/// make concurrent writes to the same field, set element and log common.
public struct RandomHistory {
    public let caseID: CaseID
    public let replicas: [ReplicaID]
    public var documents: [CaseDocument]
    public var clocks: [HybridLogicalClock]
    public var changes: [Change] = []
    public var wallMillis: UInt64 = 1_700_000_000_000
    public var generator: SeededGenerator

    public static let registers = ["r1", "r2"].map { FieldKey(entity: "case", field: $0) }
    public static let sets = [FieldKey(entity: "case", field: "tags"), FieldKey(entity: "case", field: "rwconsent")]
    public static let log = FieldKey(entity: "case", field: "notes")
    public static let elements = ["a", "b", "c"]

    public init(seed: UInt64, replicaCount: Int = 3, steps: Int = 30) {
        generator = SeededGenerator(seed: seed)
        caseID = CaseID.random(using: &generator)
        replicas = (0..<replicaCount).map { try! ReplicaID("inst\($0)/node") }
        documents = Array(repeating: CaseDocument(caseID: caseID), count: replicaCount)
        clocks = Array(repeating: HybridLogicalClock(), count: replicaCount)
        // The case opens with every replica's institution taking part (a store applies
        // only changes whose origin's institution had been added in what they had seen),
        // and every replica has seen the opening.
        let opening = Change(
            caseID: caseID, origin: replicas[0], seq: 1, hlc: clocks[0].tick(wallMillis: wallMillis),
            context: VersionVector(),
            ops: replicas.map { .insert(FieldKey(entity: "case", field: "participants"), $0.institution.rawValue) })
        for index in documents.indices {
            try! documents[index].receive(opening, rules: TestRules())
            try! clocks[index].observe(opening.hlc, wallMillis: wallMillis)
        }
        changes.append(opening)
        for _ in 0..<steps { step() }
    }

    private mutating func step() {
        wallMillis += UInt64.random(in: 0...3, using: &generator)
        let replica = Int.random(in: 0..<replicas.count, using: &generator)
        if Int.random(in: 0..<4, using: &generator) == 0 {
            let other = Int.random(in: 0..<replicas.count, using: &generator)
            for change in documents[other].history.values.sorted(by: Change.causalOrder)
            where !documents[replica].version.contains(change.dot) {
                try! clocks[replica].observe(change.hlc, wallMillis: change.hlc.physical)
            }
            try! documents[replica].merge(documents[other], rules: TestRules())
            return
        }
        var ops: [FieldOperation] = []
        for _ in 0..<Int.random(in: 1...3, using: &generator) {
            ops.append(randomOperation(for: replica))
        }
        let document = documents[replica]
        let change = Change(
            caseID: caseID, origin: replicas[replica], seq: document.version[replicas[replica]] + 1,
            hlc: clocks[replica].tick(wallMillis: wallMillis), context: document.version, ops: ops)
        try! documents[replica].receive(change, rules: TestRules())
        changes.append(change)
    }

    private mutating func randomOperation(for replica: Int) -> FieldOperation {
        let element = Self.elements.randomElement(using: &generator)!
        switch Int.random(in: 0..<7, using: &generator) {
        case 0, 1:
            let value = Value.string("v\(Int.random(in: 0..<5, using: &generator))")
            return .assign(Self.registers.randomElement(using: &generator)!, value)
        case 2: return .insert(Self.sets.randomElement(using: &generator)!, element)
        case 3: return .remove(Self.sets.randomElement(using: &generator)!, element)
        case 4, 5: return .append(Self.log, "note \(Int.random(in: 0..<100, using: &generator))")
        default:
            guard case .log(let log)? = documents[replica].fields[Self.log],
                let target = log.entries.randomElement(using: &generator)
            else { return .append(Self.log, "first note") }
            return .redact(Self.log, target.id)
        }
    }

    /// A fresh document that received `delivered` in the given order.
    public func deliver(_ delivered: [Change]) -> CaseDocument {
        var document = CaseDocument(caseID: caseID)
        for change in delivered { try! document.receive(change, rules: TestRules()) }
        return document
    }
}

extension RandomHistory {
    /// A case schema holding exactly the fields random histories write, so the real
    /// store can replay them.
    public static let schema: CaseSchema = try! CaseSchema(
        json: Array(
            """
            {"schemaVersion": 1, "entities": [{"name": "case", "multiple": false, "fields": [
              {"name": "r1", "kind": "register", "type": "string"},
              {"name": "r2", "kind": "register", "type": "string"},
              {"name": "tags", "kind": "set", "type": "string"},
              {"name": "rwconsent", "kind": "set", "semantics": "remove-wins", "type": "string"},
              {"name": "notes", "kind": "log", "type": "text"},
              {"name": "participants", "kind": "set", "type": "institution"}
            ]}]}
            """.utf8))
}
