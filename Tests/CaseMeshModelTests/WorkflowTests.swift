import CaseMeshCRDT
import CaseMeshModel
import Foundation
import Testing

@Suite("Statutory deadlines: working days under the Korean holiday calendar")
struct WorkflowTests {
    static let calendar = WorkingCalendar.korean

    static func day(_ text: String) -> CalendarDay { CalendarDay(text)! }

    /// 10:00 in Seoul on a day, as milliseconds since 1970.
    static func at(_ text: String, hour: Int = 10) -> UInt64 {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Asia/Seoul")!
        let day = Self.day(text)
        let date = calendar.date(from: DateComponents(year: day.year, month: day.month, day: day.day, hour: hour))!
        return UInt64(date.timeIntervalSince1970 * 1000)
    }

    @Test("The calendar ships 2025 to 2027 with its source, 설날, 추석 and the substitute holidays")
    func calendarFile() {
        #expect(Self.calendar.years == [2025, 2026, 2027])
        #expect(Self.calendar.source.contains("관공서의 공휴일에 관한 규정"))
        for holiday in [
            "2025-01-29", "2025-10-08", "2026-02-17", "2026-03-02", "2026-09-25", "2027-02-08", "2027-12-27",
        ] {
            #expect(!Self.calendar.isWorkingDay(Self.day(holiday)), "\(holiday) is a holiday")
        }
        #expect(Self.calendar.isWorkingDay(Self.day("2026-12-02")))
        #expect(!Self.calendar.isWorkingDay(Self.day("2026-12-05")), "a Saturday")
    }

    /// Hand-computed: each row counts the working days one by one past the holidays.
    @Test(
        "Working days are added past weekends and holidays",
        arguments: [
            ("2026-02-09", 10, "2026-02-26"),  // 설날 2026-02-16..18
            ("2025-10-02", 5, "2025-10-16"),  // 개천절, 추석 10-05..07, substitute 10-08, 한글날
            ("2027-02-04", 3, "2027-02-11"),  // 설날 2027-02-05..07 with its substitute 02-08
            ("2026-10-02", 1, "2026-10-06"),  // 개천절 on a Saturday, substitute Monday 10-05
            ("2025-01-24", 1, "2025-01-31"),  // the temporary holiday 01-27 and 설날 01-28..30
            ("2027-12-24", 1, "2027-12-28"),  // 성탄절 on a Saturday, substitute Monday 12-27
            ("2026-12-02", 0, "2026-12-02"),
        ])
    func addingWorkingDays(start: String, days: Int, expected: String) {
        #expect(Self.calendar.adding(workingDays: days, to: Self.day(start)) == Self.day(expected))
    }

    @Test("Months are calendar months, clamped at a month's end")
    func months() {
        #expect(Self.day("2026-11-30").adding(months: 3) == Self.day("2027-02-28"))
        #expect(Self.day("2026-11-30").adding(months: 6) == Self.day("2027-05-30"))
    }

    @Test("A case's deadlines from its stage events: met on time, overdue, the 30-day bound")
    func caseDeadlines() {
        let events = [
            StageEvent(from: "discovery", to: "intake", by: "이수진 (lee)", reason: nil, atMillis: Self.at("2026-02-09")),
            StageEvent(from: "intake", to: "assessment", by: nil, reason: nil, atMillis: Self.at("2026-02-11")),
            StageEvent(from: "assessment", to: "conference", by: nil, reason: nil, atMillis: Self.at("2026-02-20")),
            StageEvent(from: "conference", to: "planning", by: nil, reason: nil, atMillis: Self.at("2026-02-24")),
        ]
        let found = DeadlineRules.bundled.deadlines(events, now: Self.at("2026-03-20"))
        let byName = Dictionary(uniqueKeysWithValues: found.map { ($0.name, $0) })
        #expect(byName["assessment"]?.due == Self.day("2026-02-26"))
        #expect(byName["assessment"]?.status == .met(atMillis: Self.at("2026-02-20"), onTime: true))
        #expect(byName["selection"]?.due == Self.day("2026-02-27"))
        // 15 working days after selection (past the 3·1절 substitute on 03-02), within
        // 30 working days of intake (03-27): 03-18, passed on 03-20 without a plan.
        #expect(byName["plan"]?.due == Self.day("2026-03-18"))
        #expect(byName["plan"]?.status == .overdue)
        #expect(byName["followUp3"] == nil, "not closed: no follow-up yet")
        #expect(found.map(\.name) == ["assessment", "selection", "plan"])
        // Before the plan was due it was open, and due within 3 working days on 03-13.
        let earlier = DeadlineRules.bundled.deadlines(events, now: Self.at("2026-03-13"))
        let plan = earlier.first { $0.name == "plan" }!
        #expect(plan.status == .open)
        #expect(plan.isDue(within: 3, now: Self.at("2026-03-13"), calendar: Self.calendar))
        #expect(!plan.isDue(within: 3, now: Self.at("2026-03-09"), calendar: Self.calendar))
    }

    @Test("Each active plan item is monitored at its own interval, from provision or its last contact")
    func monitoringAtThePlansInterval() {
        func register(_ value: Value) -> FieldState {
            .register(
                RegisterState(siblings: [
                    .init(value: value, hlc: .zero, dot: Dot(origin: try! ReplicaID("a/b"), seq: 1))
                ]))
        }
        func plan(_ item: String, _ field: String) -> FieldKey {
            FieldKey(entity: "plan", instance: item, field: field)
        }
        var events = [
            StageEvent(from: "intake", to: "planning", by: nil, reason: nil, atMillis: Self.at("2026-11-20")),
            StageEvent(from: "planning", to: "provision", by: nil, reason: nil, atMillis: Self.at("2026-12-01")),
        ]
        var fields: [FieldKey: FieldState] = [
            plan("meals", "monitorEveryDays"): register(.integer(14)),
            plan("meals", "status"): register(.string("active")),
            plan("care", "monitorEveryDays"): register(.integer(30)),
            plan("care", "status"): register(.string("planned")),
        ]
        var found = DeadlineRules.monitoring(fields, events: events, now: Self.at("2026-12-10"))
        #expect(found.map(\.name) == ["monitoring:meals"], "a planned item is not monitored yet")
        #expect(found.first?.due == Self.day("2026-12-15") && found.first?.status == .open)
        #expect(DeadlineRules.monitoring(fields, events: events, now: Self.at("2026-12-16")).first?.status == .overdue)
        // A monitoring contact on 12-10 moves the next one to 12-24.
        fields[plan("meals", "monitoredAt")] = register(.string("2026-12-10T11:00:00+09:00"))
        found = DeadlineRules.monitoring(fields, events: events, now: Self.at("2026-12-16"))
        #expect(found.first?.due == Self.day("2026-12-24") && found.first?.status == .open)
        // The case list's next deadline includes it.
        #expect(DeadlineRules.bundled.nextDue(events, fields: fields)?.name == "monitoring:meals")
        // Before provision, and after closure, nothing is monitored.
        #expect(DeadlineRules.monitoring(fields, events: Array(events.prefix(1)), now: 0).isEmpty)
        events.append(
            StageEvent(from: "provision", to: "closed", by: nil, reason: "자립", atMillis: Self.at("2026-12-20")))
        #expect(DeadlineRules.monitoring(fields, events: events, now: 0).isEmpty)
    }

    @Test("Closing starts the follow-ups; a late milestone is met late")
    func closureAndLateness() {
        let events = [
            StageEvent(from: nil, to: "intake", by: nil, reason: nil, atMillis: Self.at("2026-03-02")),
            StageEvent(from: "intake", to: "conference", by: nil, reason: nil, atMillis: Self.at("2026-04-01")),
            StageEvent(
                from: "conference", to: "closed", by: nil, reason: "self-reliant", atMillis: Self.at("2026-11-30")),
        ]
        let found = DeadlineRules.bundled.deadlines(events, now: Self.at("2026-12-02"))
        let byName = Dictionary(uniqueKeysWithValues: found.map { ($0.name, $0) })
        guard case .met(_, let onTime)? = byName["assessment"]?.status else {
            Issue.record("assessment not met")
            return
        }
        #expect(!onTime, "assessed a month after intake: late")
        #expect(byName["followUp3"]?.due == Self.day("2027-02-28") && byName["followUp3"]?.status == .open)
        #expect(byName["followUp6"]?.status == .reminder)
        #expect(byName["selection"]?.status == .closedBefore, "never selected before the closure: no longer runs")
        #expect(byName["plan"] == nil, "never selected: the plan's deadline never started")
    }

    @Test("Stage events read both their JSON form and the earlier one-line form")
    func stageEventText() {
        let event = StageEvent(from: "intake", to: "assessment", by: "이수진 (lee)", reason: "방문 완료", atMillis: 5)
        #expect(StageEvent(text: event.text, atMillis: 5) == event)
        let old = StageEvent(text: "discovery → intake: 이수진 (lee)", atMillis: 7)
        #expect(old?.from == "discovery" && old?.to == "intake" && old?.by == "이수진 (lee)")
        #expect(StageEvent(text: "a free note", atMillis: 1) == nil)
        #expect(StageEvent(text: "{not json", atMillis: 1) == nil)
    }
}
