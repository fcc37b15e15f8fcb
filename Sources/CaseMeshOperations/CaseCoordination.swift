public import CaseMeshCRDT
public import CaseMeshModel
public import CaseMeshStore
import Foundation

/// Working a case together: referrals to other institutions, the services they
/// provide, handing the lead over, conferences that approve the plan, and tasks.
/// Each is one change (with its access entry) and is refused, with the reason,
/// when it does not fit where the case stands. The rules only one institution may
/// act on (who accepts a referral or a handover) are also checked by every
/// receiver on the change itself (``RoleAct``), so a node that skips these checks
/// has its change quarantined everywhere else.
extension CaseOperations {
    /// One referral as it stands.
    public struct Referral: Sendable, Hashable {
        public var instance: String
        public var from: String?
        public var to: String?
        public var service: String?
        public var need: String?
        public var consent: String?
        /// The current status; nil while two concurrent events disagree (``conflict``).
        public var status: ReferralEvent.Status?
        /// The statuses that stand side by side when two institutions wrote at once.
        public var conflict: [String]
        public var events: [ReferralEvent]
        /// Whether the referral made its receiver a participant (it leaves again on a
        /// decline or a withdrawal before an answer).
        public var joined: Bool
    }

    // MARK: Referrals

    /// The case's referrals, by instance.
    public static func referrals(of snapshot: CaseSnapshot) -> [Referral] {
        var instances: Set<String> = []
        for key in snapshot.fields.keys where key.entity == "referral" { instances.insert(key.instance) }
        return instances.sorted().map { referral(instance: $0, in: snapshot) }
    }

    static func referral(instance: String, in snapshot: CaseSnapshot) -> Referral {
        func text(_ field: String) -> String? { snapshot.string(CaseField.referral(instance, field)) }
        var events: [ReferralEvent] = []
        if case .log(let log)? = snapshot.fields[CaseField.referral(instance, "events")] {
            for entry in log.visibleEntries {
                if let event = ReferralEvent(text: entry.text, atMillis: entry.hlc.physical) { events.append(event) }
            }
        }
        var status: ReferralEvent.Status?
        var conflict: [String] = []
        if case .register(let register)? = snapshot.fields[CaseField.referral(instance, "progress")] {
            if register.isConflict {
                conflict = Array(Set(register.siblings.compactMap { $0.value.description })).sorted()
            } else if let value = register.value?.description {
                status = ReferralEvent.Status(rawValue: value)
            }
        } else if let legacy = text("status") {
            // A referral written before schema 3 (its status register only).
            status =
                [
                    "requested": .requested, "accepted": .accepted, "declined": .declined,
                    "revoked": .withdrawn, "completed": .done,
                ][legacy]
        }
        let joined = events.first { $0.status == .requested }?.joined ?? false
        return Referral(
            instance: instance, from: text("from"), to: text("to"), service: text("service"), need: text("need"),
            consent: text("consent"), status: status, conflict: conflict, events: events, joined: joined)
    }

    /// Refers a case to another institution for a service (서비스 연계·의뢰). The
    /// receiver must be covered by a consent of the case (`consent`, or any that
    /// covers it): the referral then makes it a participant, so the case reaches it
    /// and it can answer.
    ///
    /// - Returns: the new referral's instance and the change.
    public func refer(
        caseID: CaseID, to receiver: String, service: String, need: String?, consent: String?, by account: String,
        using generator: inout some RandomNumberGenerator, recording record: AccessRecord
    ) throws -> (referral: String, change: Change) {
        let snapshot = try store.snapshot(of: caseID)
        let own = store.replicaID.institution
        let target = try institution(receiver)
        guard target != own else {
            throw Refusal(kind: .invalid, message: "a referral goes to another institution", code: "referral.self")
        }
        let service = service.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !service.isEmpty else {
            throw Refusal(kind: .invalid, message: "name the service asked for", code: "referral.service")
        }
        let covering = Entitlement.consents(
            covering: target, fields: snapshot.fields, schema: store.schema, nowMillis: store.nowMillis
        ).filter { $0.value.contains(.general) }
        let chosen: String
        if let consent {
            guard covering[consent] != nil else {
                throw Refusal(
                    kind: .invalid,
                    message: "consent#\(consent.prefix(64)) does not cover \(target) (it must name it, give a basis "
                        + "and not have ended)", code: "referral.consent")
            }
            chosen = consent
        } else {
            guard let first = covering.keys.sorted().first else {
                throw Refusal(
                    kind: .invalid,
                    message: "no consent of the case covers \(target): record the person's consent (share) first",
                    code: "referral.consent")
            }
            chosen = first
        }
        let instance = "r-" + Self.randomSuffix(using: &generator)
        let joined = !snapshot.has(CaseField.participants, element: target.rawValue)
        var event = ReferralEvent(status: .requested, institution: own.rawValue, by: account, reason: need)
        event.joined = joined
        var ops: [FieldOperation] = [
            .assign(CaseField.referral(instance, "to"), .string(target.rawValue)),
            .assign(CaseField.referral(instance, "from"), .string(own.rawValue)),
            .assign(CaseField.referral(instance, "service"), .string(service)),
            .assign(CaseField.referral(instance, "consent"), .string(chosen)),
            .assign(CaseField.referral(instance, "progress"), .string(ReferralEvent.Status.requested.rawValue)),
            .append(CaseField.referral(instance, "events"), event.text),
        ]
        if let need = need?.trimmingCharacters(in: .whitespacesAndNewlines), !need.isEmpty {
            ops.append(.assign(CaseField.referral(instance, "need"), .string(need)))
        }
        if joined { ops.append(.insert(CaseField.participants, target.rawValue)) }
        return (instance, try write(caseID, ops, record))
    }

    /// Moves a referral on: the receiver accepts, declines, starts or finishes it;
    /// the referrer withdraws it. Refused when this institution may not make the
    /// move or the referral is not where the move starts.
    @discardableResult
    public func moveReferral(
        caseID: CaseID, referral instance: String, to status: ReferralEvent.Status, reason: String?, by account: String,
        recording record: AccessRecord
    ) throws -> Change {
        let snapshot = try store.snapshot(of: caseID)
        let referral = Self.referral(instance: instance, in: snapshot)
        guard referral.to != nil else {
            throw Refusal(
                kind: .notFound, message: "no referral \(instance.prefix(64)) in \(caseID)", code: "referral.none")
        }
        guard referral.conflict.isEmpty else {
            throw Refusal(
                kind: .conflict,
                message: "referral \(instance) stands as \(referral.conflict.joined(separator: " and ")) at once; "
                    + "a supervisor resolves referral#\(instance).progress first", code: "referral.conflict")
        }
        let own = store.replicaID.institution.rawValue
        let current = referral.status ?? .requested
        let allowed: [ReferralEvent.Status: [ReferralEvent.Status]] = [
            .accepted: [.requested], .declined: [.requested], .inProgress: [.accepted],
            .done: [.accepted, .inProgress],
            .withdrawn: [.requested, .accepted, .inProgress],
        ]
        guard allowed[status]?.contains(current) == true else {
            throw Refusal(
                kind: .conflict,
                message: "referral \(instance) is \(current.rawValue): it cannot become \(status.rawValue)",
                code: "referral.status")
        }
        if status == .withdrawn {
            guard referral.from == own else {
                throw Refusal(
                    kind: .forbidden,
                    message: "only the referring institution (\(referral.from ?? "?")) may withdraw it",
                    code: "referral.notReferrer")
            }
        } else if referral.to != own {
            throw Refusal(
                kind: .forbidden,
                message:
                    "only the receiving institution (\(referral.to ?? "?")) may \(status.verb) referral \(instance)",
                code: "referral.notReceiver")
        }
        let why = reason?.trimmingCharacters(in: .whitespacesAndNewlines).nilIfEmpty
        if status == .declined || status == .withdrawn, why == nil {
            throw Refusal(
                kind: .invalid, message: "say why the referral is \(status.rawValue)", code: "referral.reason")
        }
        let event = ReferralEvent(status: status, institution: own, by: account, reason: why)
        var ops: [FieldOperation] = [
            .assign(CaseField.referral(instance, "progress"), .string(status.rawValue)),
            .append(CaseField.referral(instance, "events"), event.text),
        ]
        if status == .accepted || status == .declined {
            // The legacy register too, for nodes still on schema 2.
            ops.append(.assign(CaseField.referral(instance, "status"), .string(status.rawValue)))
        }
        if let receiver = referral.to {
            switch status {
            // Accepting keeps the receiver in (an add beats a concurrent withdrawal's removal).
            case .accepted: ops.append(.insert(CaseField.participants, receiver))
            // A receiver the referral brought in leaves again when it is not taken up.
            case .declined where referral.joined, .withdrawn where referral.joined && current == .requested:
                ops.append(.remove(CaseField.participants, receiver))
            default: break
            }
        }
        return try write(caseID, ops, record)
    }

    /// Records a resource provided to the household (a public benefit or a private
    /// sponsorship): kind, provider, amount in won, funding source and dates.
    public func recordService(
        caseID: CaseID, kind: String, provider: String?, amountWon: Int?, fundingSource: String?, referral: String?,
        startedOn: String?, endedOn: String?, status: String?, using generator: inout some RandomNumberGenerator,
        recording record: AccessRecord
    ) throws -> (service: String, change: Change) {
        let snapshot = try store.snapshot(of: caseID)
        if let referral, Self.referral(instance: referral, in: snapshot).to == nil {
            throw Refusal(
                kind: .notFound, message: "no referral \(referral.prefix(64)) in \(caseID)", code: "referral.none")
        }
        let instance = "s-" + Self.randomSuffix(using: &generator)
        var texts: [(String, String)] = [
            ("kind", kind), ("provider", provider ?? store.replicaID.institution.rawValue),
        ]
        if let amountWon { texts.append(("amountWon", String(amountWon))) }
        if let fundingSource { texts.append(("fundingSource", fundingSource)) }
        if let referral { texts.append(("referral", referral)) }
        if let startedOn { texts.append(("startedOn", startedOn)) }
        if let endedOn { texts.append(("endedOn", endedOn)) }
        texts.append(("status", status ?? (endedOn == nil ? "active" : "ended")))
        let ops = try texts.map { field, value in try assignment("service#\(instance).\(field)", value) }
        return (instance, try write(caseID, ops, record))
    }

    // MARK: Lead handover

    /// The handover offer standing on a case, or nil; throws when two stand at once.
    public static func handoverOffer(of snapshot: CaseSnapshot) throws -> HandoverOffer? {
        guard case .register(let register)? = snapshot.fields[CaseField.handoverOffer] else { return nil }
        if register.isConflict {
            let offers = register.siblings.compactMap { HandoverOffer(text: $0.value.description) }
            throw Refusal(
                kind: .conflict,
                message:
                    "two handover offers stand at once (to \(offers.map(\.to).sorted().joined(separator: " and "))); "
                    + "the lead resolves case.handoverOffer first", code: "handover.conflict")
        }
        return register.value.flatMap { HandoverOffer(text: $0.description) }
    }

    /// The lead offers the case to another participating institution.
    @discardableResult
    public func offerHandover(
        caseID: CaseID, to receiver: String, reason: String?, by account: String, recording record: AccessRecord
    )
        throws -> Change
    {
        let snapshot = try store.snapshot(of: caseID)
        let own = store.replicaID.institution.rawValue
        try requireLead(snapshot, own)
        let target = try institution(receiver).rawValue
        guard target != own else {
            throw Refusal(kind: .invalid, message: "\(own) leads the case already", code: "handover.self")
        }
        guard snapshot.has(CaseField.participants, element: target) else {
            throw Refusal(
                kind: .invalid, message: "\(target) does not take part in the case: share it with them first",
                code: "handover.notParticipant")
        }
        if let standing = try Self.handoverOffer(of: snapshot), standing.status == .offered {
            throw Refusal(
                kind: .conflict, message: "the case is offered to \(standing.to) already: withdraw that offer first",
                code: "handover.pending")
        }
        let offer = HandoverOffer(to: target, from: own, by: account, reason: reason?.nilIfBlank, status: .offered)
        return try write(
            caseID,
            [.assign(CaseField.handoverOffer, .string(offer.text)), .append(CaseField.handoverEvents, offer.text)],
            record)
    }

    /// The institution offered the case accepts or declines it; or the lead
    /// withdraws its offer. Accepting makes this institution the lead (the access
    /// log follows: see ``CaseStore``'s access entries) and keeps the former lead in
    /// the case under the statutory basis of integrated case management.
    @discardableResult
    public func answerHandover(
        caseID: CaseID, _ answer: HandoverOffer.Status, reason: String?, by account: String,
        recording record: AccessRecord
    ) throws -> Change {
        let snapshot = try store.snapshot(of: caseID)
        let own = store.replicaID.institution.rawValue
        guard let offer = try Self.handoverOffer(of: snapshot), offer.status == .offered else {
            throw Refusal(kind: .notFound, message: "no handover of \(caseID) is offered", code: "handover.none")
        }
        var ops: [FieldOperation] = []
        switch answer {
        case .withdrawn:
            try requireLead(snapshot, own)
        case .accepted, .declined:
            guard offer.to == own else {
                throw Refusal(
                    kind: .forbidden, message: "the case is offered to \(offer.to), not to \(own)",
                    code: "handover.notOffered")
            }
            if answer == .accepted {
                ops.append(.assign(CaseField.leadInstitution, .string(own)))
                if let former = try? InstitutionID(offer.from) {
                    ops += ConsentGrant(
                        instance: String(("handover-" + ConsentGrant.instance(for: former)).prefix(64)),
                        recipients: [former],
                        basis: "social-security-benefits-act", categories: [.general, .sensitive],
                        purposes: ["case-management"]
                    ).ops(addingParticipants: true)
                }
            }
        case .offered:
            throw Refusal(
                kind: .invalid, message: "answer with accepted, declined or withdrawn", code: "handover.answer")
        }
        let answered = HandoverOffer(
            to: offer.to, from: offer.from, by: account, reason: reason?.nilIfBlank, status: answer)
        ops += [
            .assign(CaseField.handoverOffer, .string(answered.text)), .append(CaseField.handoverEvents, answered.text),
        ]
        return try write(caseID, ops, record)
    }

    private func requireLead(_ snapshot: CaseSnapshot, _ own: String) throws {
        guard case .register(let lead)? = snapshot.fields[CaseField.leadInstitution], !lead.isConflict,
            lead.value == .string(own)
        else {
            throw Refusal(
                kind: .forbidden,
                message:
                    "only the lead institution (\(snapshot.string(CaseField.leadInstitution) ?? "?")) hands the case over",
                code: "handover.notLead")
        }
    }

    // MARK: Conferences and tasks

    /// Records a case conference (사례회의): when, the institutions and people
    /// present, its decisions and, with `approving`, the plan items it approved,
    /// which become the next version of the service plan and carry the conference.
    public func recordConference(
        caseID: CaseID, heldAt: String, institutions: [String], people: [String], decisions: [String],
        approving items: [String], using generator: inout some RandomNumberGenerator, recording record: AccessRecord
    ) throws -> (conference: String, planVersion: Int?, change: Change) {
        let snapshot = try store.snapshot(of: caseID)
        let instance = "c-" + Self.randomSuffix(using: &generator)
        var ops = [try assignment("conference#\(instance).heldAt", heldAt)]
        for name in institutions {
            ops.append(
                .insert(
                    FieldKey(entity: "conference", instance: instance, field: "attendees"),
                    try institution(name).rawValue))
        }
        for person in people where !person.isEmpty {
            ops.append(.insert(FieldKey(entity: "conference", instance: instance, field: "people"), person))
        }
        for decision in decisions where !decision.isEmpty {
            ops.append(.append(FieldKey(entity: "conference", instance: instance, field: "decisions"), decision))
        }
        var version: Int?
        if !items.isEmpty {
            let planned = Set(snapshot.fields.keys.filter { $0.entity == "plan" }.map(\.instance))
            for item in items where !planned.contains(item) {
                throw Refusal(
                    kind: .notFound, message: "no plan item \(item.prefix(64)) in \(caseID)", code: "plan.none")
            }
            let versions = snapshot.fields.compactMap { key, state -> Int? in
                guard key.entity == "conference", key.field == "planVersion", case .register(let r) = state,
                    case .integer(let n)? = r.value
                else { return nil }
                return Int(clamping: n)
            }
            version = (versions.max() ?? 0) + 1
            ops.append(
                .assign(
                    FieldKey(entity: "conference", instance: instance, field: "planVersion"), .integer(Int64(version!)))
            )
            for item in Set(items).sorted() {
                ops.append(.insert(FieldKey(entity: "conference", instance: instance, field: "approvedItems"), item))
                ops.append(.assign(FieldKey(entity: "plan", instance: item, field: "conference"), .string(instance)))
            }
        }
        for op in ops { try CaseStore.wrapInput { try store.schema.validate(op) } }
        return (instance, version, try write(caseID, ops, record))
    }

    /// Adds a task for an account (of this institution unless named), due on a
    /// date, linked to a plan item or a referral of the case.
    public func addTask(
        caseID: CaseID, title: String, account: String, institution name: String?, dueAt: String?, linkedTo: String?,
        using generator: inout some RandomNumberGenerator, recording record: AccessRecord
    ) throws -> (task: String, change: Change) {
        let snapshot = try store.snapshot(of: caseID)
        if let linkedTo {
            let key = try? FieldKey(parsing: linkedTo + ".x")
            guard let key, ["plan", "referral"].contains(key.entity),
                snapshot.fields.keys.contains(where: { $0.entity == key.entity && $0.instance == key.instance })
            else {
                throw Refusal(
                    kind: .notFound, message: "no plan item or referral \(linkedTo.prefix(80)) in \(caseID)",
                    code: "task.link")
            }
        }
        let instance = "t-" + Self.randomSuffix(using: &generator)
        var texts: [(String, String)] = [
            ("title", title), ("account", account), ("assignee", account),
            ("institution", try institution(name ?? store.replicaID.institution.rawValue).rawValue), ("status", "open"),
        ]
        if let dueAt { texts.append(("dueAt", dueAt)) }
        if let linkedTo { texts.append(("linkedTo", linkedTo)) }
        let ops = try texts.map { field, value in try assignment("task#\(instance).\(field)", value) }
        return (instance, try write(caseID, ops, record))
    }

    /// Moves a task to open, in progress, done or cancelled.
    @discardableResult
    public func setTaskStatus(caseID: CaseID, task: String, status: String, recording record: AccessRecord) throws
        -> Change
    {
        let snapshot = try store.snapshot(of: caseID)
        guard snapshot.fields.keys.contains(where: { $0.entity == "task" && $0.instance == task }) else {
            throw Refusal(kind: .notFound, message: "no task \(task.prefix(64)) in \(caseID)", code: "task.none")
        }
        var ops = [try assignment("task#\(task).status", status)]
        ops.append(.assign(FieldKey(entity: "task", instance: task, field: "done"), .boolean(status == "done")))
        return try write(caseID, ops, record)
    }

    // MARK: People across cases

    /// Another case about the same person as one of this case's.
    public struct PersonMatch: Sendable, Hashable {
        public var person: String
        public var otherCase: CaseID
        public var otherPerson: String
        /// `resident-number` (the keyed hashes agree) or `name-birth-address`.
        public var basis: String
    }

    /// The cases that seem to be about a person of this one: the same resident
    /// number (by keyed hash), or the same name, birth year and address. Each case
    /// looked at records a read (the person's data is compared, not shown).
    public func personMatches(caseID: CaseID, recording record: AccessRecord) throws -> [PersonMatch] {
        let mine = People(try store.snapshot(of: caseID))
        guard !mine.persons.isEmpty else { return [] }
        var found: [PersonMatch] = []
        // The candidates: cases whose listing names one of these persons (the text
        // index), or, when a person has a resident-number hash, every case held
        // (hashes are compared one by one, as a person search does).
        var candidates: Set<CaseID> = []
        if mine.persons.values.contains(where: { $0.hash != nil }) {
            candidates = Set(try store.caseSummaries().map(\.caseID))
        } else {
            for name in Set(mine.persons.values.compactMap(\.displayName)) {
                let page = try store.caseSummaries(matching: CaseListFilter(text: name), limit: 500, offset: 0)
                candidates.formUnion(page.cases.map(\.caseID))
            }
        }
        candidates.remove(caseID)
        for other in candidates.sorted(by: { $0.rawValue < $1.rawValue }) {
            guard try store.withdrawal(of: other) == nil else { continue }
            let theirs = People(try store.snapshot(of: other))
            for (person, me) in mine.persons.sorted(by: { $0.key < $1.key }) {
                for (instance, them) in theirs.persons.sorted(by: { $0.key < $1.key }) {
                    if let hash = me.hash, hash == them.hash {
                        found.append(
                            .init(person: person, otherCase: other, otherPerson: instance, basis: "resident-number"))
                    } else if let compact = me.name, compact == them.name, me.birthYear != nil,
                        me.birthYear == them.birthYear, let address = mine.address, address == theirs.address
                    {
                        found.append(
                            .init(person: person, otherCase: other, otherPerson: instance, basis: "name-birth-address"))
                    }
                }
            }
        }
        try store.recordAccess(to: Array(Set(found.map(\.otherCase) + [caseID])).sorted(), record)
        return found
    }

    /// The cases linked to this one (link events replayed in time order).
    public static func links(of snapshot: CaseSnapshot) -> [CaseID] {
        guard case .log(let log)? = snapshot.fields[CaseField.links] else { return [] }
        var linked: Set<CaseID> = []
        for entry in log.visibleEntries {  // kept in timestamp order, the same on every replica
            guard let object = try? JSONSerialization.jsonObject(with: Data(entry.text.utf8)) as? [String: String],
                let text = object["case"], let other = try? CaseID(text)
            else { continue }
            if object["action"] == "unlink" { linked.remove(other) } else { linked.insert(other) }
        }
        return linked.sorted { $0.rawValue < $1.rawValue }
    }

    /// Links two cases about the same person, or undoes a link: an event on each
    /// case (never a merge of their records), so it can be undone.
    public func link(
        caseID: CaseID, to other: CaseID, unlink: Bool, reason: String?, by account: String,
        recording record: AccessRecord
    )
        throws -> [Change]
    {
        guard other != caseID else {
            throw Refusal(kind: .invalid, message: "a case is not linked to itself", code: "link.self")
        }
        let linked = Self.links(of: try store.snapshot(of: caseID)).contains(other)
        guard linked == unlink else {
            throw Refusal(
                kind: .conflict,
                message: unlink ? "\(caseID) is not linked to \(other)" : "\(caseID) is linked to \(other) already",
                code: "link.state")
        }
        _ = try store.snapshot(of: other)
        func event(_ target: CaseID) -> String {
            let object: [String: String] = [
                "case": target.rawValue, "action": unlink ? "unlink" : "link", "by": account,
                "reason": reason?.nilIfBlank ?? "",
            ]
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            return String(decoding: data, as: UTF8.self)
        }
        return [
            try write(caseID, [.append(CaseField.links, event(other))], record),
            try write(other, [.append(CaseField.links, event(caseID))], record),
        ]
    }

    // MARK: Tasks across cases

    /// One open task of an account.
    public struct TaskItem: Sendable, Hashable {
        public var caseID: CaseID
        public var caseTitle: String?
        public var task: String
        public var title: String?
        public var dueAt: String?
        public var status: String
        public var linkedTo: String?
    }

    /// The open tasks (not done or cancelled) assigned to `account` of this
    /// institution, across the cases held, earliest due first.
    public func tasks(of account: String, recording record: AccessRecord) throws -> [TaskItem] {
        let own = store.replicaID.institution.rawValue
        var items: [TaskItem] = []
        // Only the cases with a task for the account, read in one pass.
        let withTasks = Set(
            try store.cases(whereAny: "task", field: "account", is: account)
                + store.cases(whereAny: "task", field: "assignee", is: account)
        ).sorted { $0.rawValue < $1.rawValue }
        for (caseID, snapshot) in try store.snapshots(of: withTasks).sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            guard try store.withdrawal(of: caseID) == nil else { continue }
            var instances: Set<String> = []
            for key in snapshot.fields.keys where key.entity == "task" { instances.insert(key.instance) }
            for instance in instances {
                func text(_ field: String) -> String? {
                    snapshot.string(FieldKey(entity: "task", instance: instance, field: field))
                }
                let status = text("status") ?? (text("done") == "true" ? "done" : "open")
                guard text("account") ?? text("assignee") == account, (text("institution") ?? own) == own,
                    status != "done", status != "cancelled"
                else { continue }
                items.append(
                    TaskItem(
                        caseID: caseID, caseTitle: snapshot.string(CaseField.title), task: instance,
                        title: text("title"), dueAt: text("dueAt"), status: status, linkedTo: text("linkedTo")))
            }
        }
        items.sort {
            ($0.dueAt ?? "9999", $0.caseID.rawValue, $0.task) < ($1.dueAt ?? "9999", $1.caseID.rawValue, $1.task)
        }
        try store.recordAccess(to: Array(Set(items.map(\.caseID))).sorted(), record)
        return items
    }

    // MARK: Helpers

    func write(_ caseID: CaseID, _ ops: [FieldOperation], _ record: AccessRecord) throws -> Change {
        for op in ops { try CaseStore.wrapInput { try store.schema.validate(op) } }
        return try store.write(caseID: caseID, ops: ops, recording: record)
    }

    func institution(_ text: String) throws -> InstitutionID {
        do { return try InstitutionID(text) } catch {
            throw Refusal(
                kind: .invalid, message: "'\(text.prefix(80))' is not an institution ID", code: "institution.invalid")
        }
    }

    /// Eight characters of Crockford base 32: instance names that two replicas
    /// creating at once do not share.
    static func randomSuffix(using generator: inout some RandomNumberGenerator) -> String {
        let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")
        return String((0..<8).map { _ in alphabet[Int(generator.next() % 32)] })
    }
}

/// The persons of a case as matching compares them.
struct People {
    struct Person {
        /// The name without spaces (as compared).
        var name: String?
        /// The name as written (as searched).
        var displayName: String?
        var birthYear: String?
        var hash: String?
    }
    var persons: [String: Person] = [:]
    var address: String?

    init(_ snapshot: CaseSnapshot) {
        for key in snapshot.fields.keys where key.entity == "person" {
            guard persons[key.instance] == nil else { continue }
            func text(_ field: String) -> String? {
                snapshot.string(FieldKey(entity: "person", instance: key.instance, field: field))
            }
            let written = text("name")
            let name = written.map { $0.filter { !$0.isWhitespace } }
            persons[key.instance] = Person(
                name: name?.isEmpty == false ? name : nil, displayName: written, birthYear: text("birthYear"),
                hash: text("rrnHash"))
        }
        address = snapshot.string(FieldKey(entity: "household", field: "address")).map {
            $0.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
    }
}

extension CaseSnapshot {
    /// A register's text value (the provisional winner's, in a conflict).
    func string(_ key: FieldKey) -> String? {
        guard case .register(let register)? = fields[key] else { return nil }
        return register.value?.description
    }

    /// Whether a set field holds an element (add-wins reading).
    func has(_ key: FieldKey, element: String) -> Bool {
        guard case .set(let set)? = fields[key] else { return false }
        return set.contains(element, .addWins)
    }
}

extension String {
    var nilIfBlank: String? { trimmingCharacters(in: .whitespacesAndNewlines).nilIfEmpty }
}

extension ReferralEvent.Status {
    var verb: String {
        switch self {
        case .accepted: "accept"
        case .declined: "decline"
        case .inProgress: "start"
        case .done: "finish"
        case .withdrawn: "withdraw"
        case .requested: "request"
        }
    }
}
