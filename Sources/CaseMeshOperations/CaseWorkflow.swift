public import CaseMeshCRDT
public import CaseMeshModel
public import CaseMeshStore
import Foundation

/// The process of joint case management on top of a case's fields: stage moves as
/// events, and the statutory deadlines that follow from them. The CLI, the API and
/// the web app all move stages through here, so the rules live in one place.
public enum CaseWorkflow {
    static let stage = FieldKey(entity: "case", field: "stage")
    static let stageEvents = FieldKey(entity: "case", field: "stageEvents")

    /// The case's stage events in time order. A case moved without events (written
    /// before them, or by `case set stage=`) gets the events its fields imply: intake
    /// at its report or opening time, and its current stage at the time it was set.
    public static func events(of snapshot: CaseSnapshot) -> [StageEvent] {
        var events: [StageEvent] = []
        if case .log(let log)? = snapshot.fields[stageEvents] {
            for entry in log.visibleEntries {
                if let event = StageEvent(text: entry.text, atMillis: entry.hlc.physical) { events.append(event) }
            }
        }
        let current: (value: String, at: UInt64)? = {
            guard case .register(let register)? = snapshot.fields[stage], case .string(let value)? = register.value,
                let top = register.siblings.first
            else { return nil }
            return (value, top.hlc.physical)
        }()
        guard let current, current.value != "discovery" else { return events.sorted { $0.atMillis < $1.atMillis } }
        if !events.contains(where: { $0.to != "discovery" }) {
            let opened = ["report.receivedAt", "openedAt"].lazy.compactMap { name -> UInt64? in
                guard let key = try? FieldKey(parsing: name), case .register(let register)? = snapshot.fields[key],
                    case .string(let text)? = register.value
                else { return nil }
                return Self.millis(ofISO: text)
            }.first
            events.append(
                StageEvent(
                    from: nil, to: "intake", by: nil, reason: nil, atMillis: min(opened ?? current.at, current.at)))
        }
        events.sort { $0.atMillis < $1.atMillis }
        if events.last?.to != current.value {
            events.append(StageEvent(from: nil, to: current.value, by: nil, reason: nil, atMillis: current.at))
        }
        return events.sorted { $0.atMillis < $1.atMillis }
    }

    /// The case's statutory deadlines as of `now`.
    public static func deadlines(
        of snapshot: CaseSnapshot, now: UInt64, rules: DeadlineRules = .bundled, calendar: WorkingCalendar = .korean
    ) -> [Deadline] {
        rules.deadlines(events(of: snapshot), now: now, calendar: calendar)
    }

    /// Milliseconds since 1970 of an ISO 8601 time, or nil.
    static func millis(ofISO text: String) -> UInt64? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        guard let date = formatter.date(from: text) else { return nil }
        return UInt64(max(0, date.timeIntervalSince1970 * 1000))
    }
}

extension CaseOperations {
    /// Moves a case to another stage in one change: the `stage` register and a stage
    /// event (who, from, to, why). Refused, with the reason, when the move makes no
    /// sense for the people the case is about:
    ///
    /// - to the stage it is at, or to a stage the schema does not have;
    /// - closing while a service is active, without a reason;
    /// - reopening a closed case (to anything but follow-up) without a reason;
    /// - while the stage is in conflict (a supervisor decides that first).
    ///
    /// - Parameter by: the account moving it, as screens show it (`이수진 (lee)`).
    @discardableResult
    public func moveStage(
        caseID: CaseID, to target: String, reason: String?, by account: String, also: [FieldOperation] = [],
        recording record: AccessRecord
    ) throws -> Change {
        let ops = try stageMove(caseID: caseID, to: target, reason: reason, by: account)
        return try store.write(caseID: caseID, ops: ops + also, recording: record)
    }

    /// The operations of a stage move (see ``moveStage(caseID:to:reason:by:also:recording:)``),
    /// checked, for a caller that writes them with other edits in one change.
    public func stageMove(caseID: CaseID, to target: String, reason: String?, by account: String) throws
        -> [FieldOperation]
    {
        let snapshot = try store.snapshot(of: caseID)
        let stages = (try? store.schema.definition(of: CaseWorkflow.stage).values) ?? []
        guard stages.contains(target) else {
            throw Refusal(
                kind: .invalid, message: "no stage '\(target.prefix(40))': use one of \(stages.joined(separator: ", "))"
            )
        }
        var current: String?
        if case .register(let register)? = snapshot.fields[CaseWorkflow.stage] {
            guard !register.isConflict else {
                throw Refusal(
                    kind: .conflict, message: "the case's stage is in conflict; a supervisor decides it first")
            }
            if case .string(let value)? = register.value { current = value }
        }
        guard current != target else { throw Refusal(kind: .conflict, message: "the case is at \(target) already") }
        let why = reason?.trimmingCharacters(in: .whitespacesAndNewlines).nilIfEmpty
        if target == "closed", why == nil {
            let active = snapshot.fields.contains { key, state in
                guard key.entity == "service", key.field == "status", case .register(let register) = state else {
                    return false
                }
                return register.value == .string("active")
            }
            if active {
                throw Refusal(
                    kind: .invalid, message: "a service is still active: give a reason to close the case anyway")
            }
        }
        if current == "closed", target != "follow-up", why == nil {
            throw Refusal(kind: .invalid, message: "reopening a closed case needs a reason")
        }
        let event = StageEvent(from: current, to: target, by: account, reason: why, atMillis: 0)
        return [.assign(CaseWorkflow.stage, .string(target)), .append(CaseWorkflow.stageEvents, event.text)]
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}
