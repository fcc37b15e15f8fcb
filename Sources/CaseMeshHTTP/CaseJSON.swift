import CaseMeshCRDT
import CaseMeshModel
import CaseMeshOperations
import CaseMeshStore
import Foundation

/// The API's JSON forms of cases, conflicts, changes and audit entries.
enum CaseJSON {
    static func time(_ hlc: HybridTimestamp) -> JSONValue { .string(CaseRendering.time(hlc)) }

    static func isoNow() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: Date())
    }

    static func writer(_ dot: Dot, _ hlc: HybridTimestamp) -> JSONValue {
        .object([
            "institution": .string(dot.origin.institution.rawValue), "node": .string(dot.origin.rawValue),
            "at": time(hlc), "change": .string(dot.description),
        ])
    }

    /// A case as a screen needs it: every field with its merge kind and who wrote it
    /// when; open conflicts with every sibling value; notes and stage events as one
    /// timeline with the writing institution.
    static func detail(_ snapshot: CaseSnapshot, schema: CaseSchema) -> JSONValue {
        var fields: [JSONValue] = []
        var timeline: [(HybridTimestamp, JSONValue)] = []
        for key in snapshot.fields.keys.sorted() {
            guard let state = snapshot.fields[key] else { continue }
            var item: [String: JSONValue] = ["field": .string(key.description)]
            switch state {
            case .register(let register):
                item["kind"] = .string("register")
                item["value"] = register.value.map(CaseRendering.value) ?? .null
                item["conflict"] = .bool(register.isConflict)
                item["values"] = .array(
                    register.siblings.map { sibling in
                        .object([
                            "value": CaseRendering.value(sibling.value), "writer": writer(sibling.dot, sibling.hlc),
                        ])
                    })
            case .set(let set):
                item["kind"] = .string("set")
                item["value"] = .array(set.elements(schema.setSemantics(for: key)).map(JSONValue.string))
            case .log(let log):
                item["kind"] = .string("log")
                item["value"] = .number(Int64(log.visibleEntries.count))
                for entry in log.visibleEntries {
                    timeline.append(
                        (
                            entry.hlc,
                            .object([
                                "field": .string(key.description), "text": .string(entry.text),
                                "writer": writer(entry.id.dot, entry.hlc),
                            ])
                        ))
                }
            }
            fields.append(.object(item))
        }
        let conflicts = snapshot.conflicts.sorted().compactMap { key -> JSONValue? in
            guard case .register(let register)? = snapshot.fields[key] else { return nil }
            return conflict(ConflictSummary(caseID: snapshot.caseID, field: key, siblings: register.siblings))
        }
        return .object([
            "case": .string(snapshot.caseID.rawValue), "fields": .array(fields), "conflicts": .array(conflicts),
            "timeline": .array(timeline.sorted { $0.0 < $1.0 }.map(\.1)),
            "deadlines": .array(
                CaseWorkflow.deadlines(of: snapshot, now: UInt64(Date().timeIntervalSince1970 * 1000)).map(deadline)),
            "entities": CaseRendering.json(snapshot, schema: schema)["entities"] ?? .object([:]),
            "version": CaseRendering.json(snapshot, schema: schema)["version"] ?? .object([:]),
        ])
    }

    /// A statutory deadline: its name, due day (Seoul) and status.
    static func deadline(_ deadline: Deadline) -> JSONValue {
        var object: [String: JSONValue] = ["name": .string(deadline.name), "due": .string(deadline.due.description)]
        switch deadline.status {
        case .met(let at, let onTime):
            object["status"] = .string(onTime ? "met" : "late")
            object["metAt"] = .string(CaseRendering.time(millis: at))
        case .open: object["status"] = .string("open")
        case .overdue: object["status"] = .string("overdue")
        case .reminder: object["status"] = .string("reminder")
        case .closedBefore: object["status"] = .string("closed-before")
        }
        return .object(object)
    }

    static func summary(_ summary: CaseSummary) -> JSONValue {
        .object([
            "case": .string(summary.caseID.rawValue), "title": summary.title.map(JSONValue.string) ?? .null,
            "stage": summary.stage.map(JSONValue.string) ?? .null,
            "riskLevel": summary.riskLevel.map(JSONValue.string) ?? .null,
            "participants": .array(summary.participants.map(JSONValue.string)),
            "openConflicts": .number(Int64(summary.openConflicts)), "changes": .number(Int64(summary.changeCount)),
            "caseManager": summary.caseManager.map(JSONValue.string) ?? .null,
            "nextDeadline": summary.nextDeadline.map { name in
                let end = summary.nextDeadlineEndMillis ?? 0
                return .object([
                    "name": .string(name), "due": .string(CalendarDay(millis: end > 0 ? end - 1 : 0).description),
                    "overdue": .bool(end <= UInt64(Date().timeIntervalSince1970 * 1000)),
                ])
            } ?? .null,
        ])
    }

    static func conflict(_ conflict: ConflictSummary) -> JSONValue {
        .object([
            "case": .string(conflict.caseID.rawValue), "field": .string(conflict.field.description),
            "provisional": conflict.siblings.first.map { CaseRendering.value($0.value) } ?? .null,
            "values": .array(
                conflict.siblings.map { sibling in
                    .object(["value": CaseRendering.value(sibling.value), "writer": writer(sibling.dot, sibling.hlc)])
                }),
        ])
    }

    static func change(_ change: Change) -> JSONValue {
        .object([
            "case": .string(change.caseID.rawValue), "change": .string(change.dot.description),
            "operations": .number(Int64(change.ops.count)), "at": time(change.hlc),
        ])
    }

    static func access(_ entry: AccessEntry) -> JSONValue {
        .object([
            "at": .string(CaseRendering.time(millis: entry.occurredAtMillis)),
            "institution": .string(entry.node.institution.rawValue), "node": .string(entry.node.rawValue),
            "actor": .string(entry.record.actor), "action": .string(entry.record.action.rawValue),
            "purpose": .string(entry.record.purpose), "via": .string(entry.record.via),
        ])
    }

    static func quarantined(_ change: QuarantinedChange) -> JSONValue {
        .object([
            "id": .number(change.id), "case": .string(change.caseID), "origin": .string(change.origin),
            "seq": .number(Int64(clamping: change.seq)), "sender": .string(change.sender),
            "reason": .string(change.reason), "attempts": .number(Int64(change.attempts)),
            "receivedAt": .string(CaseRendering.time(millis: change.receivedAtMillis)),
            "resolved": .bool(change.resolvedAtMillis != nil),
        ])
    }

    static func peer(_ state: PeerState) -> JSONValue {
        .object([
            "peer": .string(state.peer.rawValue),
            "lastSuccess": state.lastSuccessAtMillis.map { .string(CaseRendering.time(millis: $0)) } ?? .null,
            "lastAttempt": state.lastAttemptAtMillis.map { .string(CaseRendering.time(millis: $0)) } ?? .null,
            "lastError": state.lastError.map(JSONValue.string) ?? .null,
            "changesPulled": .number(Int64(clamping: state.changesPulled)),
        ])
    }
}

/// Pages of the change feed: every change this node holds, in arrival order.
enum ChangeFeed {
    struct Page {
        var changes: [Change]
        var cursor: UInt64
        var isFinal: Bool
        var identity: String
        var json: JSONValue {
            .object([
                "cursor": .string("\(identity).\(cursor)"), "final": .bool(isFinal),
                "changes": .array(
                    changes.map { change in
                        .object([
                            "case": .string(change.caseID.rawValue), "change": .string(change.dot.description),
                            "institution": .string(change.origin.institution.rawValue), "at": CaseJSON.time(change.hlc),
                            "fields": .array(
                                Array(Set(change.ops.map(\.field.description))).sorted().map(JSONValue.string)),
                        ])
                    }),
            ])
        }
    }

    static func page(store: CaseStore, from cursor: UInt64, identity: String, accessLogs: Bool) throws -> Page {
        let page = try store.feedPage(from: cursor, maxChanges: 500)
        let accessLog = CaseField.accessLog
        let shown = accessLogs ? page.changes : page.changes.filter { !$0.ops.contains { $0.field == accessLog } }
        return Page(changes: shown, cursor: page.nextCursor, isFinal: page.isFinal, identity: identity)
    }
}

/// The OpenAPI 3.1 document of `/api/v1`, served at `/api/v1/openapi.json`.
enum OpenAPIDocument {
    static var bytes: [UInt8] { PackageResources.openapi_json }
}
