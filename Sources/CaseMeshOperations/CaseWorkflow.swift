public import CaseMeshCRDT
public import CaseMeshModel
public import CaseMeshStore
import Foundation

/// The process of joint case management on top of a case's fields: stage moves as
/// events, and the statutory deadlines that follow from them. The CLI, the API and
/// the web app all move stages through here, so the rules live in one place.
public enum CaseWorkflow {
    static let stage = CaseField.stage
    static let stageEvents = CaseField.stageEvents

    /// The case's stage events in time order (see ``StageEvent/events(in:)``).
    public static func events(of snapshot: CaseSnapshot) -> [StageEvent] { StageEvent.events(in: snapshot.fields) }

    /// The moment a deadline due within `workingDays` working days of `now` is
    /// missed at the latest: the end of that working day (for ``CaseListFilter/deadlineBefore``).
    public static func dueSoonBound(now: UInt64, workingDays: Int, calendar: WorkingCalendar = .korean) -> UInt64 {
        calendar.adding(workingDays: workingDays, to: CalendarDay(millis: now)).endMillis
    }

    /// The case's statutory deadlines as of `now`.
    public static func deadlines(
        of snapshot: CaseSnapshot, now: UInt64, rules: DeadlineRules = .bundled, calendar: WorkingCalendar = .korean
    ) -> [Deadline] {
        let events = events(of: snapshot)
        return
            (rules.deadlines(events, now: now, calendar: calendar)
            + DeadlineRules.monitoring(snapshot.fields, events: events, now: now)).sorted { $0.due < $1.due }
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
                kind: .invalid,
                message: "no stage '\(target.prefix(40))': use one of \(stages.joined(separator: ", "))",
                code: "stage.unknown")
        }
        var current: String?
        if case .register(let register)? = snapshot.fields[CaseWorkflow.stage] {
            guard !register.isConflict else {
                throw Refusal(
                    kind: .conflict, message: "the case's stage is in conflict; a supervisor decides it first",
                    code: "stage.conflict")
            }
            if case .string(let value)? = register.value { current = value }
        }
        guard current != target else {
            throw Refusal(kind: .conflict, message: "the case is at \(target) already", code: "stage.same")
        }
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
                    kind: .invalid, message: "a service is still active: give a reason to close the case anyway",
                    code: "stage.activeService")
            }
        }
        if current == "closed", target != "follow-up", why == nil {
            throw Refusal(kind: .invalid, message: "reopening a closed case needs a reason", code: "stage.reopen")
        }
        let event = StageEvent(from: current, to: target, by: account, reason: why, atMillis: 0)
        return [.assign(CaseWorkflow.stage, .string(target)), .append(CaseWorkflow.stageEvents, event.text)]
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}
