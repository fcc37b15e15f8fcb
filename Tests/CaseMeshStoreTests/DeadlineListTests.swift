import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
import Foundation
import Testing

/// The case list's deadline columns: overdue and due-soon lists are one query, and
/// they agree with the deadlines computed from each case's stage events.
@Suite struct DeadlineListTests {
    static func at(_ text: String) -> UInt64 {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Asia/Seoul")!
        let day = CalendarDay(text)!
        return UInt64(
            calendar.date(from: DateComponents(year: day.year, month: day.month, day: day.day, hour: 10))!
                .timeIntervalSince1970 * 1000)
    }

    static func move(_ store: CaseStore, _ caseID: CaseID, from: String?, to: String) throws {
        try store.write(
            caseID: caseID,
            ops: [
                .assign(FieldKey(entity: "case", field: "stage"), .string(to)),
                .append(
                    FieldKey(entity: "case", field: "stageEvents"),
                    StageEvent(from: from, to: to, by: "test", reason: nil, atMillis: 0).text),
            ])
    }

    @Test func overdueAndDueSoonListsMatchTheDeadlinesOfEachCase() throws {
        let clock = RetentionTests.MovableClock(Self.at("2026-02-09"))
        let store = try CaseStore.inMemory(replicaID: try ReplicaID("dong.office/server"), clock: clock)
        var generator = SeededGenerator(seed: 7)
        func open(_ title: String) throws -> CaseID {
            try store.openCase(
                ops: [
                    .assign(FieldKey(entity: "case", field: "title"), .string(title)),
                    .assign(FieldKey(entity: "case", field: "stage"), .string("discovery")),
                ], using: &generator
            ).caseID
        }
        // Taken on 02-09: the assessment is due on 02-26 (10 working days past 설날).
        let late = try open("late")
        try Self.move(store, late, from: "discovery", to: "intake")
        // Taken, assessed and selected on 02-09: the plan is due on 03-06.
        let planning = try open("planning")
        try Self.move(store, planning, from: "discovery", to: "intake")
        try Self.move(store, planning, from: "intake", to: "conference")
        try Self.move(store, planning, from: "conference", to: "planning")
        // Never taken: no deadline runs.
        let waiting = try open("waiting")
        _ = waiting

        let now = Self.at("2026-03-01")
        let overdue = try store.caseSummaries(matching: CaseListFilter(deadlineBefore: now), limit: 50, offset: 0)
        #expect(overdue.cases.map(\.caseID) == [late])
        #expect(overdue.cases.first?.nextDeadline == "assessment")
        #expect(overdue.cases.first?.nextDeadlineEndMillis == CalendarDay("2026-02-26")!.endMillis)
        // Due within 3 working days of Sunday 03-01 (03-02 is a substitute holiday):
        // by the end of 03-05, so the plan due 03-06 is not yet in; within 4 it is.
        let within3 = WorkingCalendar.korean.adding(workingDays: 3, to: CalendarDay(millis: now)).endMillis
        let within4 = WorkingCalendar.korean.adding(workingDays: 4, to: CalendarDay(millis: now)).endMillis
        #expect(
            try store.caseSummaries(matching: CaseListFilter(deadlineBefore: within3), limit: 50, offset: 0).total == 1)
        let soon = try store.caseSummaries(matching: CaseListFilter(deadlineBefore: within4), limit: 50, offset: 0)
        #expect(Set(soon.cases.map(\.caseID)) == [late, planning])

        // The stored line agrees with the deadlines computed from the case itself.
        for caseID in [late, planning, waiting] {
            let snapshot = try store.snapshot(of: caseID)
            let next = DeadlineRules.bundled.nextDue(StageEvent.events(in: snapshot.fields), fields: snapshot.fields)
            let line = try store.caseSummaries(matching: CaseListFilter(), limit: 50, offset: 0).cases.first {
                $0.caseID == caseID
            }
            #expect(line?.nextDeadline == next?.name)
            #expect(line?.nextDeadlineEndMillis == next.map(\.due.endMillis))
        }
        // Planned: the case's next deadline is gone from the lists.
        clock.set(Self.at("2026-03-04"))
        try Self.move(store, planning, from: "planning", to: "provision")
        #expect(
            try store.caseSummaries(matching: CaseListFilter(deadlineBefore: within4), limit: 50, offset: 0).cases.map(
                \.caseID) == [late])
        #expect(try store.check().isEmpty)
    }
}
