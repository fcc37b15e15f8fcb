import CaseMeshCRDT
import CaseMeshModel
import CaseMeshOperations
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

        // The process of joint case management, through the operations case
        // workers use (``CaseOperations``), with `by` acting:

        /// Moves the case with this label to the stage `to` (with `reason`).
        public var move: String?
        /// Refers the case with this label to institution `to` for `service`; the
        /// referral is known afterwards by `label`.
        public var refer: String?
        public var service: String?
        public var label: String?
        /// Moves the referral with this label to `status` (with `reason`).
        public var referral: String?
        public var status: String?
        /// The lead offers the case with this label to institution `to`.
        public var handover: String?
        /// The institution offered the case with this label answers `answer`
        /// (accepted, declined; withdrawn by the lead).
        public var answerHandover: String?
        public var answer: String?
        /// Records a conference on the case with this label, approving the plan items `approve`.
        public var conference: String?
        public var approve: [String]?
        /// A channel's report arrives at `by` under this case label, for the household's
        /// `dong`, routed by `routes` (dong → institution).
        public var intake: String?
        public var dong: String?
        public var routes: [String: String]?
        public var to: String?
        public var reason: String?
        /// The step must be refused, with a message containing this.
        public var refused: String?
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
        /// A statutory deadline (its name) and its status there, by that node's own
        /// clock: open, overdue, met, late (met after its day), reminder or closed.
        public var deadline: String?
        public var deadlineStatus: String?
        /// The referral with this label and its status; with `conflict`, the statuses
        /// that stand side by side.
        public var referral: String?
        public var status: String?
        /// The institutions the standing handover offers name (two for concurrent offers).
        public var offeredTo: [String]?
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
        var referrals: [String: (caseLabel: String, instance: String)] = [:]
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
            let record = AccessRecord(
                action: .write, actor: step.by ?? "scenario", purpose: "case-management",
                via: "scenario step \(number + 1)")
            do {
                if try playWorkflow(
                    step, store: { try store(step.by) }, cases: &cases, referrals: &referrals, generator: &generator,
                    record: record)
                {
                    if let refused = step.refused {
                        throw SimulationError("step \(number + 1) was not refused (expected '\(refused)')")
                    }
                } else if let label = step.open {
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
                if let refused = step.refused, error.message.contains(refused) { continue }
                throw SimulationError("step \(number + 1): \(error.message)")
            } catch let refusal as CaseOperations.Refusal {
                if let refused = step.refused, refusal.message.contains(refused) { continue }
                throw SimulationError("step \(number + 1) refused: \(refusal.message)")
            }
        }
        return try check(scenario, stores: stores, clocks: clocks, cases: cases, referrals: referrals)
    }

    /// Plays a step of the case-management process; false for a step of another kind.
    private func playWorkflow(
        _ step: Scenario.Step, store: () throws -> CaseStore, cases: inout [String: CaseID],
        referrals: inout [String: (caseLabel: String, instance: String)], generator: inout SeededGenerator,
        record: AccessRecord
    ) throws -> Bool {
        let known = cases
        func caseID(_ label: String) throws -> CaseID {
            guard let caseID = known[label] else { throw SimulationError("unknown case '\(label)'") }
            return caseID
        }
        let by = step.by ?? "scenario"
        if let label = step.move, let target = step.to {
            try CaseOperations(store: try store()).moveStage(
                caseID: try caseID(label), to: target, reason: step.reason, by: by, recording: record)
        } else if let label = step.refer, let target = step.to {
            let made = try CaseOperations(store: try store()).refer(
                caseID: try caseID(label), to: target, service: step.service ?? "service", need: step.reason,
                consent: nil, by: by, using: &generator, recording: record)
            referrals[step.label ?? made.referral] = (label, made.referral)
        } else if let label = step.referral, let text = step.status {
            guard let known = referrals[label] else { throw SimulationError("unknown referral '\(label)'") }
            guard let status = ReferralEvent.Status(rawValue: text) else {
                throw SimulationError("unknown referral status '\(text)'")
            }
            try CaseOperations(store: try store()).moveReferral(
                caseID: try caseID(known.caseLabel), referral: known.instance, to: status, reason: step.reason, by: by,
                recording: record)
        } else if let label = step.handover, let target = step.to {
            try CaseOperations(store: try store()).offerHandover(
                caseID: try caseID(label), to: target, reason: step.reason, by: by, recording: record)
        } else if let label = step.answerHandover, let text = step.answer {
            guard let answer = HandoverOffer.Status(rawValue: text) else {
                throw SimulationError("unknown handover answer '\(text)'")
            }
            try CaseOperations(store: try store()).answerHandover(
                caseID: try caseID(label), answer, reason: step.reason, by: by, recording: record)
        } else if let label = step.conference {
            _ = try CaseOperations(store: try store()).recordConference(
                caseID: try caseID(label),
                heldAt: ISOTime.string(millis: try store().nowMillis, fractionalSeconds: false),
                institutions: [], people: [], decisions: step.reason.map { [$0] } ?? [], approving: step.approve ?? [],
                using: &generator, recording: record)
        } else if let label = step.intake {
            var routes: [String: InstitutionID] = [:]
            for (dong, institution) in step.routes ?? [:] { routes[dong] = try InstitutionID(institution) }
            let store = try store()
            let report: [FieldOperation] =
                [
                    .assign(FieldKey(entity: "report", field: "channel"), .string("kakao")),
                    .assign(CaseField.stage, .string("discovery")),
                ] + (step.dong.map { [.assign(FieldKey(entity: "household", field: "dong"), .string($0))] } ?? [])
            let received = try CaseOperations(store: store).receiveReport(
                channel: "kakao", messageID: label, ops: report, dong: step.dong,
                routing: routes.isEmpty ? nil : IntakeRouting(routes: routes), using: &generator, recording: record)
            cases[label] = received.caseID
        } else {
            return false
        }
        return true
    }

    private func check(
        _ scenario: Scenario, stores: [String: CaseStore], clocks: [String: SimulatedClock], cases: [String: CaseID],
        referrals: [String: (caseLabel: String, instance: String)]
    ) throws -> [String] {
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
                    if let expected = expectation.conflict, expectation.referral == nil {
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
                failures += Self.checkWorkflow(
                    expectation, at: name, snapshot: snapshot, now: clocks[name]?.nowMillis() ?? 0, referrals: referrals
                )
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

    /// The expectations about the process: deadlines by the node's own clock,
    /// referrals and handover offers.
    static func checkWorkflow(
        _ expectation: Scenario.Expectation, at name: String, snapshot: CaseSnapshot, now: UInt64,
        referrals: [String: (caseLabel: String, instance: String)]
    ) -> [String] {
        var failures: [String] = []
        if let deadline = expectation.deadline, let wanted = expectation.deadlineStatus {
            let found = CaseWorkflow.deadlines(of: snapshot, now: now).first { $0.name == deadline }
            let status: String
            switch found?.status {
            case .met(_, let onTime)?: status = onTime ? "met" : "late"
            case .open?: status = "open"
            case .overdue?: status = "overdue"
            case .reminder?: status = "reminder"
            case .closedBefore?: status = "closed"
            case nil: status = "none"
            }
            if status != wanted {
                failures.append(
                    "\(name): deadline \(deadline) of '\(expectation.case)' is \(status), expected \(wanted)")
            }
        }
        if let label = expectation.referral {
            guard let known = referrals[label] else { return failures + ["unknown referral '\(label)'"] }
            let referral = CaseOperations.referrals(of: snapshot).first { $0.instance == known.instance }
            if let wanted = expectation.status, referral?.status?.rawValue != wanted {
                failures.append(
                    "\(name): referral \(label) is \(referral?.status?.rawValue ?? "none") "
                        + "(\(referral?.conflict ?? [])), expected \(wanted)")
            }
            if let wanted = expectation.conflict, Set(referral?.conflict ?? []) != Set(wanted) {
                failures.append("\(name): referral \(label) stands as \(referral?.conflict ?? []), expected \(wanted)")
            }
        }
        if let wanted = expectation.offeredTo {
            var offered: [String] = []
            if case .register(let register)? = snapshot.fields[CaseField.handoverOffer] {
                offered = register.siblings.compactMap { HandoverOffer(text: $0.value.description) }
                    .filter { $0.status == .offered }.map(\.to)
            }
            if offered.sorted() != wanted.sorted() {
                failures.append("\(name): the case is offered to \(offered.sorted()), expected \(wanted.sorted())")
            }
        }
        return failures
    }
}
