import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
import Foundation

/// A scripted story with expected outcomes, read from JSON under `scenarios/`:
/// which institution does what, who is offline, when they sync, and what every
/// replica must show afterwards. Each institution runs one replica (`<name>/node`)
/// with its own real store; syncs run the real protocol.
public struct Scenario: Decodable, Sendable {
    public var name: String
    public var institutions: [String]
    public var steps: [Step]
    public var expect: [Expectation]

    /// One thing that happens. Exactly one of the groups of keys is used:
    /// `by` + `open`/`edit`/`resolve`; `sync`; `offline`/`online`; `advance`; `skew`.
    public struct Step: Decodable, Sendable {
        /// The acting institution.
        public var by: String?
        /// Opens a case under this name (the scenario's own label for it).
        public var open: String?
        /// Edits the case with this label.
        public var edit: String?
        /// Resolves a conflict on `field` of the case with this label, to `value`.
        public var resolve: String?
        public var field: String?
        public var value: String?
        /// Register writes: field → value.
        public var set: [String: String]?
        /// Set additions and removals: field → elements.
        public var add: [String: [String]]?
        public var remove: [String: [String]]?
        /// A note appended to the case.
        public var note: String?
        /// Two institutions sync with each other, or "all" (every pair among the online, until quiet).
        public var sync: [String]?
        public var offline: [String]?
        public var online: [String]?
        /// Time passes, in hours.
        public var advanceHours: Double?
        /// An institution's clock runs this many hours ahead (0 to fix it).
        public var skewHours: [String: Double]?
    }

    /// What must hold at the end.
    public struct Expectation: Decodable, Sendable {
        /// The institutions it holds at, or ["all"] for every one holding the case.
        public var at: [String]
        public var `case`: String
        /// A register's provisional value.
        public var field: String?
        public var value: String?
        /// The values an open conflict on `field` keeps (any order); [] for no conflict.
        public var conflict: [String]?
        /// A set's elements (any order).
        public var elements: [String]?
        /// Notes that must be shown (each a substring of one note).
        public var notes: [String]?
        /// The case must not be held there at all.
        public var absent: Bool?
    }

    public static func load(_ path: String) throws -> Scenario {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw SimulationError("cannot read the scenario \(path)")
        }
        do {
            return try JSONDecoder().decode(Scenario.self, from: data)
        } catch {
            throw SimulationError("scenario \(path) does not parse: \(error)")
        }
    }
}

/// Plays a ``Scenario`` and reports the expectations that did not hold.
public struct ScenarioRunner {
    public init() {}

    public func run(_ scenario: Scenario, directory: String) async throws -> [String] {
        var stores: [String: CaseStore] = [:]
        var ends: [String: SimulatedLink.End] = [:]
        var clocks: [String: SimulatedClock] = [:]
        let consortium = try SimulatedConsortium(directory: directory + "/ca")
        for name in scenario.institutions {
            let clock = SimulatedClock(start: Simulation.start)
            clocks[name] = clock
            // "dong" is the dong centre's server (dong/node); "dong/laptop-1" one of its laptops.
            let member = try consortium.member(
                try ReplicaID(name.contains("/") ? name : "\(name)/node"),
                directory: directory + "/" + name.replacingOccurrences(of: "/", with: "__"), clock: clock)
            stores[name] = member.store
            ends[name] = SimulatedLink.End(store: member.store, authentication: member.authentication)
        }
        func end(_ name: String) throws -> SimulatedLink.End {
            guard let end = ends[name] else { throw SimulationError("unknown institution '\(name)'") }
            return end
        }
        func store(_ name: String?) throws -> CaseStore {
            guard let name, let store = stores[name] else {
                throw SimulationError("unknown institution '\(name ?? "")'")
            }
            return store
        }
        var cases: [String: CaseID] = [:]
        var offline: Set<String> = []
        var generator = SeededGenerator(seed: 7)
        for (number, step) in scenario.steps.enumerated() {
            for clock in clocks.values { clock.advance(by: 1_000) }
            func ops() throws -> [FieldOperation] {
                var ops: [FieldOperation] = []
                let schema = CaseSchema.bundled
                for (field, value) in (step.set ?? [:]).sorted(by: { $0.key < $1.key }) {
                    let key = try FieldKey(parsing: field)
                    ops.append(.assign(key, try schema.parseValue(value, for: key)))
                }
                for (field, elements) in (step.add ?? [:]).sorted(by: { $0.key < $1.key }) {
                    let key = try FieldKey(parsing: field)
                    if key == Entitlement.participants {
                        // The stories are about merging: adding a participant in a story
                        // also records the household's consent to share all of it with it.
                        ops += ConsentGrant(
                            recipients: try elements.map { try InstitutionID($0) },
                            categories: DataCategory.allCases
                        ).ops()
                    } else {
                        ops += elements.map { .insert(key, $0) }
                    }
                }
                for (field, elements) in (step.remove ?? [:]).sorted(by: { $0.key < $1.key }) {
                    ops += try elements.map { .remove(try FieldKey(parsing: field), $0) }
                }
                if let note = step.note { ops.append(.append(CaseField.notes, note)) }
                return ops
            }
            do {
                if let label = step.open {
                    cases[label] = try store(step.by).openCase(ops: try ops(), using: &generator).caseID
                } else if let label = step.edit {
                    guard let caseID = cases[label] else { throw SimulationError("unknown case '\(label)'") }
                    try store(step.by).write(caseID: caseID, ops: try ops())
                } else if let label = step.resolve, let field = step.field, let value = step.value {
                    guard let caseID = cases[label] else { throw SimulationError("unknown case '\(label)'") }
                    let key = try FieldKey(parsing: field)
                    try store(step.by).write(
                        caseID: caseID, ops: [.assign(key, try CaseSchema.bundled.parseValue(value, for: key))])
                } else if let pair = step.sync {
                    if pair == ["all"] {
                        let online = scenario.institutions.filter { !offline.contains($0) }
                        for _ in 0..<4 {
                            for a in online {
                                for b in online where a < b {
                                    _ = try await SimulatedLink.sync(try end(a), try end(b), cutAfter: nil)
                                }
                            }
                        }
                    } else if pair.count == 2, !offline.contains(pair[0]), !offline.contains(pair[1]) {
                        _ = try await SimulatedLink.sync(try end(pair[0]), try end(pair[1]), cutAfter: nil)
                    }
                } else if let names = step.offline {
                    offline.formUnion(names)
                } else if let names = step.online {
                    offline.subtract(names)
                } else if let hours = step.advanceHours {
                    for clock in clocks.values { clock.advance(by: UInt64(hours * 3_600_000)) }
                } else if let skews = step.skewHours {
                    for (name, hours) in skews { clocks[name]?.setSkew(Int64(hours * 3_600_000)) }
                } else {
                    throw SimulationError("step \(number + 1) does nothing")
                }
            } catch let error as StoreError where error.code == .invalidWrite {
                throw SimulationError("step \(number + 1): \(error.message)")
            }
        }
        return try check(scenario, stores: stores, cases: cases)
    }

    private func check(_ scenario: Scenario, stores: [String: CaseStore], cases: [String: CaseID]) throws -> [String] {
        var failures: [String] = []
        for expectation in scenario.expect {
            guard let caseID = cases[expectation.case] else {
                failures.append("expectation names unknown case '\(expectation.case)'")
                continue
            }
            let names =
                expectation.at == ["all"]
                ? scenario.institutions.filter { (try? stores[$0]?.snapshot(of: caseID)) != nil } : expectation.at
            var views: [String] = []
            for name in names {
                guard let store = stores[name] else { failures.append("unknown institution '\(name)'"); continue }
                let snapshot = try? store.snapshot(of: caseID)
                if expectation.absent == true {
                    if snapshot != nil { failures.append("\(name) holds case '\(expectation.case)' but must not") }
                    continue
                }
                guard let snapshot else {
                    failures.append("\(name) does not hold case '\(expectation.case)'")
                    continue
                }
                views.append(
                    String(describing: snapshot.fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }))
                if let field = expectation.field {
                    let key = try FieldKey(parsing: field)
                    let state = snapshot.fields[key]
                    if let value = expectation.value {
                        guard case .register(let register)? = state, register.value?.description == value else {
                            failures.append("\(name): \(field) of '\(expectation.case)' is not \(value)")
                            continue
                        }
                    }
                    if let expected = expectation.conflict {
                        var kept: [String] = []
                        if case .register(let register)? = state, register.isConflict {
                            kept = register.siblings.map(\.value.description)
                        }
                        if Set(kept) != Set(expected) || kept.count != expected.count {
                            failures.append("\(name): conflict on \(field) keeps \(kept), expected \(expected)")
                        }
                    }
                    if let expected = expectation.elements {
                        var elements: [String] = []
                        if case .set(let set)? = state {
                            elements = set.elements(CaseSchema.bundled.setSemantics(for: key))
                        }
                        if Set(elements) != Set(expected) {
                            failures.append("\(name): \(field) holds \(elements), expected \(expected)")
                        }
                    }
                }
                if let notes = expectation.notes {
                    var shown: [String] = []
                    if case .log(let log)? = snapshot.fields[CaseField.notes] {
                        shown = log.visibleEntries.map(\.text)
                    }
                    for note in notes where !shown.contains(where: { $0.contains(note) }) {
                        failures.append("\(name): note '\(note)' is missing")
                    }
                }
            }
            if expectation.at == ["all"], Set(views).count > 1 {
                failures.append("the replicas holding '\(expectation.case)' do not show the same case")
            }
        }
        return failures
    }
}
