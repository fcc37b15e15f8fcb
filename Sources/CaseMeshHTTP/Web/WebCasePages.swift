import CaseMeshCRDT
import CaseMeshModel
import CaseMeshOperations
import CaseMeshStore
import Foundation
import Hummingbird

/// The case list, the case page and its forms (note, edit, take a report).
extension WebApp {
    /// The entities in the order a case worker reads a case (the schema's groups).
    static let groupOrder = [
        "case", "report", "household", "person", "assessment", "plan", "conference", "referral", "service", "task",
        "consent",
    ]

    /// Fields no edit form offers: who takes part and under which consent change by
    /// sharing; the lead by a handover; the resident number hash only by
    /// `persons/identify`; logs by their own forms.
    static let notEditable: Set<String> = [
        "case.participants", "case.leadInstitution", "case.tags", "person.rrnHash",
        "household.members",
    ]

    // MARK: Values as people read them

    func display(_ value: Value, _ definition: FieldDefinition?, _ t: WebCatalogue) -> String {
        switch (value, definition?.type) {
        case (.boolean(let flag), _): return t[flag ? "yes" : "no"]
        case (.integer(let number), _) where definition?.name == "amountWon":
            return Self.grouped(number) + (t.language == "ko" ? "원" : " won")
        case (.integer(let number), _): return String(number)
        case (.string(let text), .enum?):
            if definition?.name == "stage" { return t.stage(text) }
            if definition?.name == "riskLevel" { return t.risk(text) }
            return t.value(text)
        case (.string(let text), .datetime?):
            return WebCatalogue.millis(ofISO: text).map { t.time(millis: $0) } ?? text
        case (.string(let text), .date?):
            return WebCatalogue.millis(ofISO: text).map { t.date(millis: $0) } ?? text
        case (.string(let text), .institution?): return institutionName(text)
        case (.string(let text), _): return text
        }
    }

    static func grouped(_ number: Int64) -> String {
        let digits = String(number.magnitude)
        var out = ""
        for (index, character) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(character)
        }
        return (number < 0 ? "-" : "") + out
    }

    func registerValue(_ snapshot: CaseSnapshot, _ field: String) -> Value? {
        guard let key = try? FieldKey(parsing: field), case .register(let register)? = snapshot.fields[key] else {
            return nil
        }
        return register.value
    }

    func text(_ snapshot: CaseSnapshot, _ field: String) -> String? {
        registerValue(snapshot, field).map(\.description)
    }

    func writer(_ dot: Dot, _ hlc: HybridTimestamp, _ t: WebCatalogue) -> String {
        "\(institutionName(dot.origin.institution.rawValue)) · \(t.time(millis: hlc.physical))"
    }

    /// An institution as screens show it: its Korean name from the consortium
    /// directory (see ``CaseStore/memberDirectory()``), or its ID without one.
    func institutionName(_ id: String) -> String {
        guard let institution = try? InstitutionID(id), let directory = try? store.memberDirectory() else { return id }
        return directory.name(of: institution)
    }

    /// When the case came in: the report's time, the opening time, or the first write.
    func intakeMillis(_ snapshot: CaseSnapshot) -> UInt64? {
        for field in ["report.receivedAt", "openedAt"] {
            if let text = text(snapshot, field), let millis = WebCatalogue.millis(ofISO: text) { return millis }
        }
        return snapshot.fields.values.compactMap { state -> UInt64? in
            if case .register(let register) = state { return register.siblings.map(\.hlc.physical).min() }
            return nil
        }.min()
    }

    /// The next deadline recorded in the case: its service due date, a plan item's
    /// or an open task's due date, whichever comes first.
    func nextDeadline(_ snapshot: CaseSnapshot) -> (millis: UInt64, label: String)? {
        var candidates: [(UInt64, String)] = []
        if let text = text(snapshot, "serviceDueAt"), let millis = WebCatalogue.millis(ofISO: text) {
            candidates.append((millis, "serviceDueAt"))
        }
        for (key, state) in snapshot.fields where key.field == "dueAt" && (key.entity == "task" || key.entity == "plan")
        {
            guard case .register(let register) = state, case .string(let text)? = register.value,
                let millis = WebCatalogue.millis(ofISO: text)
            else { continue }
            let sibling = { (field: String) -> Value? in
                guard
                    case .register(let other)? = snapshot.fields[
                        FieldKey(entity: key.entity, instance: key.instance, field: field)]
                else { return nil }
                return other.value
            }
            if key.entity == "task", sibling("done") == .boolean(true) { continue }
            if key.entity == "plan", let status = sibling("status"),
                status == .string("done") || status == .string("cancelled")
            {
                continue
            }
            candidates.append((millis, key.entity))
        }
        return candidates.min { $0.0 < $1.0 }.map { ($0.0, $0.1) }
    }

    // MARK: 내 사례

    func casesPage(_ call: Call) async throws -> Response {
        let t = call.t
        let query = call.request.uri.queryParameters
        let stage = query.get("stage").map { String($0) }.flatMap { $0.isEmpty ? nil : $0 }
        let risk = query.get("risk").map { String($0) }.flatMap { $0.isEmpty ? nil : $0 }
        let search = query.get("q").map { String($0) }.flatMap { $0.isEmpty ? nil : String($0.prefix(100)) }
        let conflictsOnly = query.get("conflicts") == "true"
        let offset = min(max(Int(query.get("offset") ?? "0") ?? 0, 0), 10_000_000)
        let limit = 50
        let overdueOnly = query.get("overdue") == "true"
        let soonOnly = query.get("soon") == "true"
        let mineOnly = query.get("mine") == "true"
        let account = try call.account
        let nowMillis = UInt64(Date().timeIntervalSince1970 * 1000)
        var filter = CaseListFilter(
            stage: stage, riskLevel: risk, participant: nil, conflictsOnly: conflictsOnly, text: search,
            caseManager: mineOnly ? "\(account.displayName) (\(account.username))" : nil)
        if soonOnly { filter.deadlineBefore = CaseWorkflow.dueSoonBound(now: nowMillis, workingDays: 3) }
        if overdueOnly { filter.deadlineBefore = nowMillis }
        let page = try store.caseSummaries(matching: filter, limit: limit, offset: offset)
        let intake = try store.caseSummaries(matching: CaseListFilter(stage: "discovery"), limit: 20, offset: 0).cases
        let shown = Array(Set(page.cases.map(\.caseID) + intake.map(\.caseID))).sorted()
        try store.recordAccess(to: shown, try entry(.read, call, via: "GET /cases"))
        let now = UInt64(Date().timeIntervalSince1970 * 1000)

        let snapshots = try store.snapshots(of: shown)
        func row(_ summary: CaseSummary) throws -> [String: Any] {
            let snapshot =
                snapshots[summary.caseID]
                ?? CaseSnapshot(caseID: summary.caseID, version: VersionVector(), fields: [:])
            var row: [String: Any] = [
                "id": summary.caseID.rawValue, "title": summary.title ?? t["untitled"], "stage": t.stage(summary.stage),
                "risk": t.risk(summary.riskLevel), "riskCode": summary.riskLevel ?? "none",
                "lead": text(snapshot, "leadInstitution").map(institutionName) ?? "—",
                "manager": text(snapshot, "caseManager") ?? "—",
                "participants": summary.participants.map(institutionName).joined(separator: ", "),
            ]
            if summary.openConflicts > 0 { row["conflicts"] = summary.openConflicts }
            if let since = intakeMillis(snapshot) {
                row["days"] = "\(now > since ? (now - since) / 86_400_000 : 0)\(t["days_suffix"])"
                row["received"] = t.time(millis: since)
            }
            if let channel = text(snapshot, "report.channel") { row["channel"] = t.value(channel) }
            if let name = summary.nextDeadline, let end = summary.nextDeadlineEndMillis, end > 0 {
                row["deadline"] = "\(t.deadline(name)) \(t.date(millis: end - 1))"
                if end <= now { row["overdue"] = true }
            } else if let deadline = nextDeadline(snapshot) {
                row["deadline"] = t.date(millis: deadline.millis)
                if deadline.millis < now { row["overdue"] = true }
            } else {
                row["deadline"] = t["no_deadline"]
            }
            return row
        }

        func link(offset: Int) -> String {
            var parts = ["offset=\(offset)"]
            if let stage { parts.append("stage=\(Self.escapeQuery(stage))") }
            if let risk { parts.append("risk=\(Self.escapeQuery(risk))") }
            if let search { parts.append("q=\(Self.escapeQuery(search))") }
            if conflictsOnly { parts.append("conflicts=true") }
            if overdueOnly { parts.append("overdue=true") }
            if soonOnly { parts.append("soon=true") }
            if mineOnly { parts.append("mine=true") }
            return "/cases?" + parts.joined(separator: "&")
        }
        var data: [String: Any] = [
            "rows": try page.cases.map(row), "intake": try intake.map(row), "total": page.total,
            "filter": [
                "q": search ?? "", "conflicts": conflictsOnly, "overdue": overdueOnly, "soon": soonOnly,
                "mine": mineOnly,
            ],
            "stages": options("stage", selected: stage, t),
            "risks": options("riskLevel", selected: risk, t),
        ]
        if offset > 0 { data["prev"] = link(offset: max(0, offset - limit)) }
        if offset + limit < page.total { data["next"] = link(offset: offset + limit) }
        return render(call, "cases", data, title: t["cases_title"], page: "cases", flash: flash(call))
    }

    func options(_ field: String, selected: String?, _ t: WebCatalogue) -> [[String: Any]] {
        guard let key = try? FieldKey(parsing: field), let definition = try? schema.definition(of: key) else {
            return []
        }
        return (definition.values ?? []).map { code in
            ["code": code, "name": display(.string(code), definition, t), "selected": code == selected]
        }
    }

    // MARK: The case page

    func casePage(_ call: Call) async throws -> Response {
        let t = call.t
        let caseID = try caseID(call)
        let account = try call.account
        let snapshot = try store.read(caseID, recording: try entry(.read, call, via: "GET /cases/{id}"))
        let conflicted = Set(snapshot.conflicts)
        var groups: [[String: Any]] = []
        var timeline: [(HybridTimestamp, [String: Any])] = []
        let entities =
            Self.groupOrder.filter { schema.entities[$0] != nil }
            + schema.entities.keys.sorted().filter { !Self.groupOrder.contains($0) }
        for entityName in entities where entityName != "consent" {
            guard let entity = schema.entities[entityName] else { continue }
            var instances = Set(snapshot.fields.keys.filter { $0.entity == entityName }.map(\.instance)).sorted()
            if !entity.multiple { instances = [""] }
            for instance in instances {
                var fields: [[String: Any]] = []
                var inputs: [[String: Any]] = []
                for definition in entity.fields {
                    let key = FieldKey(entity: entityName, instance: instance, field: definition.name)
                    let state = snapshot.fields[key]
                    switch state {
                    case .log(let log)?:
                        guard definition.name != "accessLog" else { continue }
                        for item in log.visibleEntries {
                            var (body, author) = Self.signed(item.text)
                            if let words = workflowText(key, item.text, t) { (body, author) = words }
                            if definition.name == "stageEvents",
                                let event = StageEvent(text: item.text, atMillis: item.hlc.physical)
                            {
                                body =
                                    "\(t.stage(event.from)) → \(t.stage(event.to))"
                                    + (event.reason.map { " — \(t["stage_reason"]): \($0)" } ?? "")
                                author = event.by
                            }
                            var entry: [String: Any] = [
                                "key": key.description, "kind": logKind(definition.name, t),
                                "institution": institutionName(item.id.dot.origin.institution.rawValue),
                                "at": t.time(millis: item.hlc.physical), "text": body,
                            ]
                            if let author { entry["account"] = author }
                            timeline.append((item.hlc, entry))
                        }
                        continue
                    case .register(let register)?:
                        var field: [String: Any] = [
                            "key": key.description, "label": t.field(key),
                            "value": register.value.map { display($0, definition, t) } ?? "",
                            "caseID": caseID.rawValue,
                        ]
                        if register.isConflict { field["conflict"] = true }
                        if let top = register.siblings.first { field["writer"] = writer(top.dot, top.hlc, t) }
                        fields.append(field)
                    case .set(let set)?:
                        let elements = set.elements(schema.setSemantics(for: key))
                        guard !elements.isEmpty else { break }
                        fields.append([
                            "key": key.description, "label": t.field(key),
                            "value": elements.map { display(.string($0), definition, t) }.joined(separator: ", "),
                        ])
                    case nil: break
                    }
                    if let input = input(
                        for: key, definition, state, locked: conflicted.contains(key) && account.role < .supervisor, t)
                    {
                        inputs.append(input)
                    }
                }
                guard !fields.isEmpty || !entity.multiple else { continue }
                let anchor = instance.isEmpty ? entityName : "\(entityName)-\(instance)"
                groups.append([
                    "name": t.group(entityName) + (instance.isEmpty ? "" : " \(instance)"), "anchor": anchor,
                    "fields": fields, "editable": !inputs.isEmpty, "inputs": inputs, "caseID": caseID.rawValue,
                    "isCase": entityName == "case",
                ])
            }
            // A new instance of a repeating entity (a person, a plan item, a task...).
            // (A referral is made with the referral form: it checks the consent and brings the receiver in.)
            if entity.multiple, ["person", "plan", "task", "service", "assessment"].contains(entityName) {
                let key = { (field: String) in FieldKey(entity: entityName, instance: "new", field: field) }
                let inputs = entity.fields.compactMap { definition in
                    input(for: key(definition.name), definition, nil, locked: false, t)
                }
                groups.append([
                    "name": "\(t.group(entityName)) — \(t["new_instance"])", "anchor": "\(entityName)-new",
                    "fields": [[String: Any]](), "editable": true, "inputs": inputs, "caseID": caseID.rawValue,
                    "isNew": true,
                ])
            }
        }
        let stage = text(snapshot, "stage")
        let lead = text(snapshot, "leadInstitution")
        var data: [String: Any] = [
            "id": caseID.rawValue, "caseID": caseID.rawValue, "title": text(snapshot, "title") ?? t["untitled"],
            "stage": t.stage(stage), "risk": t.risk(text(snapshot, "riskLevel")),
            "riskCode": text(snapshot, "riskLevel") ?? "none", "lead": lead.map(institutionName) ?? "—",
            "manager": text(snapshot, "caseManager") ?? "—", "groups": groups,
            "timeline": timeline.sorted { $0.0 > $1.0 }.map(\.1),
            "participants": participants(snapshot).map(institutionName), "consents": consents(snapshot, t),
            "canTake": stage == "discovery", "canShare": account.role >= .supervisor,
        ]
        if !conflicted.isEmpty { data["conflictCount"] = conflicted.count }
        data["deadlines"] = statutoryDeadlines(snapshot, t)
        data.merge(coordination(snapshot, account: account, t)) { _, new in new }
        // The access log is the lead institution's record (PIPA's access records).
        if account.role >= .supervisor, lead == store.replicaID.institution.rawValue {
            data["showAccess"] = true
            data["access"] = try store.accessLog(of: caseID).suffix(50).reversed().map { item -> [String: Any] in
                [
                    "at": t.time(millis: item.occurredAtMillis),
                    "institution": institutionName(item.node.institution.rawValue),
                    "actor": item.record.actor, "action": t["access_action_\(item.record.action.rawValue)"],
                ]
            }
        }
        return render(
            call, "case", data, title: data["title"] as? String ?? "", page: "case", caseID: caseID.rawValue,
            flash: flash(call))
    }

    /// The line that ends a note written in the web app: "— 이수진 (lee)".
    static let signature = "—"

    /// A note's text and the account that signed it, if its last line is a signature.
    static func signed(_ text: String) -> (body: String, account: String?) {
        guard let newline = text.lastIndex(of: "\n") else { return (text, nil) }
        let last = text[text.index(after: newline)...]
        guard last.hasPrefix(signature + " "), last.count <= 120 else { return (text, nil) }
        return (String(text[..<newline]), String(last.dropFirst(signature.count + 1)))
    }

    /// The case's statutory deadlines as the case page lists them.
    func statutoryDeadlines(_ snapshot: CaseSnapshot, _ t: WebCatalogue) -> [[String: Any]] {
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        return CaseWorkflow.deadlines(of: snapshot, now: now).map { deadline in
            let status: (String, String) =
                switch deadline.status {
                case .met(let at, let onTime):
                    (onTime ? "met" : "late", "\(t[onTime ? "status_met" : "status_late"]) (\(t.date(millis: at)))")
                case .open: ("open", t["status_open"])
                case .overdue: ("overdue", t["status_overdue"])
                case .reminder: ("reminder", t["status_reminder"])
                case .closedBefore: ("closed", t["status_closed_before"])
                }
            return [
                "name": t.deadline(deadline.name), "due": t.date(millis: deadline.due.lastMillis),
                "status": status.1, "statusCode": status.0,
            ]
        }
    }

    func logKind(_ field: String, _ t: WebCatalogue) -> String {
        switch field {
        case "stageEvents": t["kind_stage"]
        case "decisions": t["kind_decision"]
        case "deliveries": t["kind_delivery"]
        case "events": t["kind_referral"]
        case "handoverEvents": t["kind_handover"]
        default: t["kind_note"]
        }
    }

    func participants(_ snapshot: CaseSnapshot) -> [String] {
        guard case .set(let set)? = snapshot.fields[Entitlement.participants] else { return [] }
        return set.elements(schema.setSemantics(for: Entitlement.participants)).sorted()
    }

    func consents(_ snapshot: CaseSnapshot, _ t: WebCatalogue) -> [[String: Any]] {
        let instances = Set(snapshot.fields.keys.filter { $0.entity == "consent" }.map(\.instance)).sorted()
        return instances.map { instance in
            func field(_ name: String) -> String {
                let key = FieldKey(entity: "consent", instance: instance, field: name)
                let definition = try? schema.definition(of: key)
                switch snapshot.fields[key] {
                case .register(let register)?: return register.value.map { display($0, definition, t) } ?? ""
                case .set(let set)?:
                    return set.elements(schema.setSemantics(for: key)).map { display(.string($0), definition, t) }
                        .joined(separator: ", ")
                default: return ""
                }
            }
            return [
                "recipients": field("recipients"), "basis": field("basis"), "purposes": field("purposes"),
                "categories": field("categories"), "until": field("validUntil"),
            ]
        }
    }

    /// The input of one field in an edit form, or nil when the form does not offer it.
    func input(
        for key: FieldKey, _ definition: FieldDefinition, _ state: FieldState?, locked: Bool, _ t: WebCatalogue
    ) -> [String: Any]? {
        guard !Self.notEditable.contains("\(key.entity).\(key.field)"), definition.kind != .log else { return nil }
        let id = key.description.replacingOccurrences(of: ".", with: "-").replacingOccurrences(of: "#", with: "-")
        var input: [String: Any] = ["key": key.description, "label": t.field(key), "id": id]
        if locked { input["locked"] = true }
        if definition.kind == .set {
            guard definition.type == .enum, let values = definition.values else { return nil }
            var current: [String] = []
            if case .set(let set)? = state { current = set.elements(schema.setSemantics(for: key)) }
            input["isChecks"] = true
            input["was"] = current.joined(separator: ",")
            input["options"] = values.map { code in
                ["code": code, "name": display(.string(code), definition, t), "selected": current.contains(code)]
            }
            return input
        }
        var current = ""
        if case .register(let register)? = state, let value = register.value { current = value.description }
        switch definition.type {
        case .enum, .boolean:
            let values = definition.type == .boolean ? ["true", "false"] : definition.values ?? []
            input["isSelect"] = true
            input["options"] = values.map { code in
                [
                    "code": code,
                    "name": definition.type == .boolean
                        ? t[code == "true" ? "yes" : "no"] : display(.string(code), definition, t),
                    "selected": code == current,
                ]
            }
        case .text:
            input["isArea"] = true
        default:
            input["isText"] = true
            input["inputType"] = definition.type == .integer ? "number" : definition.type == .date ? "date" : "text"
        }
        input["current"] = current
        return input
    }

    // MARK: Forms

    func addNote(_ call: Call) async throws -> Response {
        let form = try await checkedForm(call)
        let caseID = try caseID(call)
        let text = (form.first("text") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw WebFailure(.unprocessableContent, call.t["note_label"]) }
        // Signed, as a paper case file's notes are: the account travels with the note
        // to every institution (a change names only its node, which its seal proves).
        let account = try call.account
        let signed = "\(text)\n\(Self.signature) \(account.displayName) (\(account.username))"
        try store.write(
            caseID: caseID, ops: [.append(CaseField.notes, signed)],
            recording: try entry(.write, call, via: "POST /cases/{id}/note"))
        return WebHeaders.redirect("/cases/\(caseID)?done=note-\(caseID)")
    }

    /// One atomic change of what the form changed: registers whose value differs from
    /// the one the form showed, and set elements checked or unchecked.
    func edit(_ call: Call) async throws -> Response {
        let form = try await checkedForm(call)
        let caseID = try caseID(call)
        let account = try call.account
        var ops: [FieldOperation] = []
        var fresh: [String: String] = [:]
        func key(_ text: String) throws -> FieldKey {
            var parsed: FieldKey
            do { parsed = try FieldKey(parsing: text) } catch { throw WebFailure(.badRequest, error.message) }
            if parsed.instance == "new" {
                // A new person, task or plan item: an instance ID no other node picks.
                if fresh[parsed.entity] == nil {
                    var generator = SystemRandomNumberGenerator()
                    let letters = Array("abcdefghjkmnpqrstvwxyz23456789")
                    fresh[parsed.entity] =
                        String(parsed.entity.prefix(1)) + "-"
                        + String((0..<8).map { _ in letters.randomElement(using: &generator)! })
                }
                parsed.instance = fresh[parsed.entity]!
            }
            guard !Self.notEditable.contains("\(parsed.entity).\(parsed.field)") else {
                throw WebFailure(.unprocessableContent, "\(text.prefix(80)) is not changed by this form")
            }
            return parsed
        }
        let snapshot = try store.snapshot(of: caseID)
        for (name, value) in form.pairs where name.hasPrefix("f:") {
            let field = String(name.dropFirst(2))
            let was = form.first("was:\(field)") ?? ""
            let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
            guard trimmed != was, !trimmed.isEmpty else { continue }
            let fieldKey = try key(field)
            if snapshot.conflicts.contains(fieldKey), account.role < .supervisor {
                throw WebFailure(.conflict, call.t["resolve_supervisor_only"])
            }
            let parsed = try CaseStore.wrapInput { try schema.parseValue(trimmed, for: fieldKey) }
            ops.append(.assign(fieldKey, parsed))
        }
        for (name, was) in form.pairs where name.hasPrefix("was:") {
            let field = String(name.dropFirst(4))
            guard let probe = try? FieldKey(parsing: field), let definition = try? schema.definition(of: probe),
                definition.kind == .set
            else { continue }
            let fieldKey = try key(field)
            let before = Set(was.split(separator: ",").map { String($0) })
            let after = Set(form.all("s:\(field)"))
            for element in after.subtracting(before).sorted() { ops.append(.insert(fieldKey, element)) }
            for element in before.subtracting(after).sorted() { ops.append(.remove(fieldKey, element)) }
        }
        // A stage change goes through the workflow's rules and is recorded as a stage
        // event (who moved it, from what, why), in the same change as the rest.
        let stageKey = CaseField.stage
        if let index = ops.firstIndex(where: { if case .assign(let field, _) = $0 { field == stageKey } else { false } }
        ),
            case .assign(_, .string(let target)) = ops[index]
        {
            ops.remove(at: index)
            ops += try CaseOperations(store: store).stageMove(
                caseID: caseID, to: target, reason: form.first("stageReason"),
                by: "\(account.displayName) (\(account.username))")
        }
        for op in ops { try CaseStore.wrapInput { try schema.validate(op) } }
        guard !ops.isEmpty else { return WebHeaders.redirect("/cases/\(caseID)?done=none") }
        try store.write(caseID: caseID, ops: ops, recording: try entry(.write, call, via: "POST /cases/{id}/edit"))
        let group =
            form.pairs.first { $0.name.hasPrefix("f:") || $0.name.hasPrefix("was:") }.map { pair -> String in
                let field = pair.name.split(separator: ":", maxSplits: 1).last.map { String($0) } ?? ""
                let parsed = try? FieldKey(parsing: field)
                return parsed.map { $0.instance.isEmpty ? $0.entity : "\($0.entity)-\($0.instance)" } ?? ""
            } ?? ""
        return WebHeaders.redirect("/cases/\(caseID)?done=edit-\(caseID)-\(Self.escapeQuery(group))")
    }

    /// Takes a new report from the intake queue: this account becomes its case
    /// manager and the case moves from discovery to intake, recorded as a stage event.
    func take(_ call: Call) async throws -> Response {
        _ = try await checkedForm(call)
        let caseID = try caseID(call)
        let account = try call.account
        let snapshot = try store.snapshot(of: caseID)
        guard text(snapshot, "stage") == "discovery" else {
            let manager = text(snapshot, "caseManager") ?? "—"
            throw WebFailure(.conflict, "\(call.t["taken"]) (\(call.t["col_manager"]): \(manager))")
        }
        let manager = "\(account.displayName) (\(account.username))"
        try CaseOperations(store: store).moveStage(
            caseID: caseID, to: "intake", reason: nil, by: manager,
            also: [
                .assign(CaseField.caseManager, .string(manager)),
                .remove(CaseField.tags, "intake-new"),
            ], recording: try entry(.write, call, via: "POST /cases/{id}/take"))
        return WebHeaders.redirect("/cases/\(caseID)?done=take")
    }
}
