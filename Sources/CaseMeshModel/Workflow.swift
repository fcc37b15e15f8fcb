public import CaseMeshCRDT
public import Foundation

/// A day in Asia/Seoul, where every deadline of a Korean case runs.
public struct CalendarDay: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var year: Int
    public var month: Int
    public var day: Int

    public init(year: Int, month: Int, day: Int) {
        self.year = year
        self.month = month
        self.day = day
    }

    /// Parses `YYYY-MM-DD` (the date part of a longer ISO 8601 text is taken).
    public init?(_ text: some StringProtocol) {
        let parts = text.prefix(10).split(separator: "-")
        guard parts.count == 3, let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
            (1900...2200).contains(year), (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        self.init(year: year, month: month, day: day)
    }

    /// The Seoul day of a moment.
    public init(millis: UInt64) {
        let date = Date(timeIntervalSince1970: Double(millis) / 1000)
        let parts = Self.seoul.dateComponents([.year, .month, .day], from: date)
        self.init(year: parts.year ?? 1970, month: parts.month ?? 1, day: parts.day ?? 1)
    }

    public var description: String { String(format: "%04d-%02d-%02d", year, month, day) }

    public static func < (a: CalendarDay, b: CalendarDay) -> Bool {
        (a.year, a.month, a.day) < (b.year, b.month, b.day)
    }

    /// The Gregorian calendar in Asia/Seoul, where every date of a case is read.
    public static let seoul: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Asia/Seoul") ?? TimeZone(secondsFromGMT: 9 * 3600)!
        return calendar
    }()

    var date: Date {
        Self.seoul.date(from: DateComponents(year: year, month: month, day: day, hour: 12))
            ?? Date(timeIntervalSince1970: 0)
    }

    /// The first moment after this day ends (midnight in Seoul, ms since 1970): a
    /// deadline on this day is missed from then on.
    public var endMillis: UInt64 {
        let start = Self.seoul.startOfDay(for: date)
        let next = Self.seoul.date(byAdding: .day, value: 1, to: start) ?? start
        return UInt64(max(0, next.timeIntervalSince1970 * 1000))
    }

    /// The first moment of this day (midnight in Seoul, ms since 1970).
    public var startMillis: UInt64 {
        UInt64(max(0, Self.seoul.startOfDay(for: date).timeIntervalSince1970 * 1000))
    }

    /// The last moment of this day (ms), for showing the day a deadline falls on.
    public var lastMillis: UInt64 { endMillis > 0 ? endMillis - 1 : 0 }

    /// 1 Sunday … 7 Saturday.
    public var weekday: Int { Self.seoul.component(.weekday, from: date) }

    public func adding(days: Int) -> CalendarDay {
        CalendarDay(
            millis: UInt64(
                max(0, (Self.seoul.date(byAdding: .day, value: days, to: date) ?? date).timeIntervalSince1970 * 1000)))
    }

    public func adding(months: Int) -> CalendarDay {
        CalendarDay(
            millis: UInt64(
                max(
                    0, (Self.seoul.date(byAdding: .month, value: months, to: date) ?? date).timeIntervalSince1970 * 1000
                )))
    }
}

/// Working days under the Korean public-holiday calendar (`schema/holidays-kr.json`):
/// Monday to Friday except public holidays, substitute holidays and the temporary
/// holidays and election days declared for the years the file covers.
public struct WorkingCalendar: Sendable {
    public let holidays: [CalendarDay: String]
    /// The years the file lists holidays for; outside them only weekends are known.
    public let years: Set<Int>
    public let source: String

    public static let korean: WorkingCalendar = {
        // The file is part of the binary and read by the tests: a broken one is a
        // build defect, which leaves weekends as the only days off rather than trap.
        (try? WorkingCalendar(json: PackageResources.holidays_kr_json))
            ?? WorkingCalendar(holidays: [:], years: [], source: "")
    }()

    public init(holidays: [CalendarDay: String], years: Set<Int>, source: String) {
        self.holidays = holidays
        self.years = years
        self.source = source
    }

    public init(json: [UInt8]) throws(ModelError) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any],
            let list = object["holidays"] as? [String: String]
        else { throw ModelError(code: .invalidSchema, message: "the holiday calendar is not valid JSON") }
        var holidays: [CalendarDay: String] = [:]
        for (text, name) in list {
            guard let day = CalendarDay(text) else {
                throw ModelError(
                    code: .invalidSchema, message: "the holiday calendar has a bad date '\(text.prefix(20))'")
            }
            holidays[day] = name
        }
        self.init(
            holidays: holidays, years: Set((object["years"] as? [Int]) ?? []), source: object["source"] as? String ?? ""
        )
    }

    public func isWorkingDay(_ day: CalendarDay) -> Bool {
        day.weekday != 1 && day.weekday != 7 && holidays[day] == nil
    }

    /// The day `count` working days after `day` (the day itself not counted).
    public func adding(workingDays count: Int, to day: CalendarDay) -> CalendarDay {
        var current = day
        var left = max(0, count)
        // Bounded: a year has far fewer than 200 days off.
        var steps = 0
        while left > 0, steps < count * 3 + 400 {
            current = current.adding(days: 1)
            if isWorkingDay(current) { left -= 1 }
            steps += 1
        }
        return current
    }
}

/// One move of a case from stage to stage: an entry of its `stageEvents` log, so the
/// history stays whole when two institutions move it at once (the `stage` register,
/// written in the same change, shows the concurrent moves as a conflict to review).
public struct StageEvent: Hashable, Sendable {
    public var from: String?
    public var to: String
    /// The account that moved it (`이수진 (lee)`), as the writing node recorded it.
    public var by: String?
    public var reason: String?
    /// When (the entry's timestamp).
    public var atMillis: UInt64

    public init(from: String?, to: String, by: String?, reason: String?, atMillis: UInt64) {
        self.from = from
        self.to = to
        self.by = by
        self.reason = reason
        self.atMillis = atMillis
    }

    /// The entry's text: a JSON object with sorted keys.
    public var text: String {
        var object: [String: String] = ["to": to]
        if let from { object["from"] = from }
        if let by { object["by"] = by }
        if let reason { object["reason"] = reason }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// An entry as written: the JSON form, or the earlier `from → to: who` line.
    public init?(text: String, atMillis: UInt64) {
        if text.hasPrefix("{") {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
                let to = object["to"] as? String
            else { return nil }
            self.init(
                from: object["from"] as? String, to: to, by: object["by"] as? String,
                reason: object["reason"] as? String, atMillis: atMillis)
            return
        }
        guard let arrow = text.range(of: " → ") else { return nil }
        let rest = text[arrow.upperBound...]
        let to = rest.prefix { $0 != ":" }.trimmingCharacters(in: .whitespaces)
        guard !to.isEmpty else { return nil }
        let by = rest.dropFirst(to.count).drop { $0 == ":" || $0 == " " }
        self.init(
            from: String(text[..<arrow.lowerBound]), to: to, by: by.isEmpty ? nil : String(by), reason: nil,
            atMillis: atMillis)
    }
}

/// Where a statutory deadline stands.
public enum DeadlineStatus: Hashable, Sendable {
    /// Reached on time, or late, at this moment.
    case met(atMillis: UInt64, onTime: Bool)
    /// Not reached, not yet due.
    case open
    /// Not reached, and its day has passed.
    case overdue
    /// A date to remember, with nothing that meets it (the 6-month follow-up).
    case reminder
    /// Not reached when the case was closed: it no longer runs.
    case closedBefore
}

/// One statutory deadline of a case.
public struct Deadline: Hashable, Sendable {
    public var name: String
    public var due: CalendarDay
    public var status: DeadlineStatus

    /// Open (or a reminder) and due within `workingDays` working days of `now`.
    public func isDue(within workingDays: Int, now: UInt64, calendar: WorkingCalendar) -> Bool {
        switch status {
        case .open, .reminder:
            return due <= calendar.adding(workingDays: workingDays, to: CalendarDay(millis: now))
                && now < due.endMillis
        default: return false
        }
    }
}

/// The consortium's deadline rules (`schema/deadlines.json`).
public struct DeadlineRules: Sendable {
    public struct Rule: Sendable {
        public var name: String
        public var from: String
        public var workingDays: Int?
        public var months: Int?
        public var metBy: String?
        public var atMost: (from: String, workingDays: Int)?
    }

    /// Milestone name to the stages that reach it.
    public let milestones: [String: Set<String>]
    public let rules: [Rule]

    public static let bundled: DeadlineRules = {
        (try? DeadlineRules(json: PackageResources.deadlines_json)) ?? DeadlineRules(milestones: [:], rules: [])
    }()

    public init(milestones: [String: Set<String>], rules: [Rule]) {
        self.milestones = milestones
        self.rules = rules
    }

    public init(json: [UInt8]) throws(ModelError) {
        func bad(_ what: String) -> ModelError { ModelError(code: .invalidSchema, message: "deadlines: \(what)") }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any],
            let milestones = object["milestones"] as? [String: [String]],
            let list = object["deadlines"] as? [[String: Any]]
        else { throw bad("not valid JSON with milestones and deadlines") }
        var rules: [Rule] = []
        for item in list {
            guard let name = item["name"] as? String, let from = item["from"] as? String, milestones[from] != nil
            else { throw bad("a deadline needs a name and a known 'from' milestone") }
            let workingDays = item["workingDays"] as? Int
            let months = item["months"] as? Int
            guard (workingDays == nil) != (months == nil), (workingDays ?? months ?? 0) > 0,
                (workingDays ?? months ?? 0) <= 400
            else { throw bad("\(name) needs workingDays or months (1 to 400)") }
            let metBy = item["metBy"] as? String
            if let metBy, milestones[metBy] == nil { throw bad("\(name) is met by an unknown milestone '\(metBy)'") }
            var atMost: (String, Int)?
            if let limit = item["atMost"] as? [String: Any] {
                guard let from = limit["from"] as? String, milestones[from] != nil,
                    let days = limit["workingDays"] as? Int, (1...400).contains(days)
                else { throw bad("\(name)'s atMost needs a known 'from' and workingDays") }
                atMost = (from, days)
            }
            rules.append(
                Rule(name: name, from: from, workingDays: workingDays, months: months, metBy: metBy, atMost: atMost))
        }
        self.init(milestones: milestones.mapValues(Set.init), rules: rules)
    }

    /// When a case first reached each milestone (the last time, for `closed`), from
    /// its stage events in time order.
    public func milestoneTimes(_ events: [StageEvent]) -> [String: UInt64] {
        var times: [String: UInt64] = [:]
        for event in events.sorted(by: { $0.atMillis < $1.atMillis }) {
            for (name, stages) in milestones where stages.contains(event.to) {
                if name == "closed" || times[name] == nil { times[name] = event.atMillis }
            }
        }
        return times
    }

    /// The case's deadlines as of `now`, in due order: only those whose starting
    /// milestone has been reached.
    public func deadlines(_ events: [StageEvent], now: UInt64, calendar: WorkingCalendar = .korean) -> [Deadline] {
        let times = milestoneTimes(events)
        var found: [Deadline] = []
        for rule in rules {
            guard let start = times[rule.from] else { continue }
            let startDay = CalendarDay(millis: start)
            var due =
                rule.months.map { startDay.adding(months: $0) }
                ?? calendar.adding(workingDays: rule.workingDays ?? 0, to: startDay)
            if let limit = rule.atMost, let other = times[limit.from] {
                due = min(due, calendar.adding(workingDays: limit.workingDays, to: CalendarDay(millis: other)))
            }
            let status: DeadlineStatus
            if let metBy = rule.metBy {
                if let reached = times[metBy], reached >= start {
                    status = .met(atMillis: reached, onTime: reached < due.endMillis)
                } else if rule.from != "closed", let closed = times["closed"], closed >= start {
                    status = .closedBefore
                } else {
                    status = now >= due.endMillis ? .overdue : .open
                }
            } else {
                status = .reminder
            }
            found.append(Deadline(name: rule.name, due: due, status: status))
        }
        return found.sorted { $0.due < $1.due }
    }
}

extension StageEvent {
    static let stage = CaseField.stage
    static let log = CaseField.stageEvents

    /// The fields stage events are read from: the stage, its log, and the report's
    /// and the case's opening times (for a case moved without events).
    public static let sourceFields: Set<FieldKey> = [
        stage, log, FieldKey(entity: "report", field: "receivedAt"), CaseField.openedAt,
    ]

    /// A case's stage events in time order, from its fields. A case moved without
    /// events (before they existed, or by `case set stage=`) gets the events its
    /// fields imply: intake at its report or opening time (or when its stage was
    /// set), and its current stage at the time it was set.
    public static func events(in fields: [FieldKey: FieldState]) -> [StageEvent] {
        var events: [StageEvent] = []
        if case .log(let entries)? = fields[log] {
            for entry in entries.visibleEntries {
                if let event = StageEvent(text: entry.text, atMillis: entry.hlc.physical) { events.append(event) }
            }
        }
        guard case .register(let register)? = fields[stage], case .string(let current)? = register.value,
            let top = register.siblings.first, current != "discovery"
        else { return events.sorted { $0.atMillis < $1.atMillis } }
        let setAt = top.hlc.physical
        if !events.contains(where: { $0.to != "discovery" }) {
            let opened = ["report.receivedAt", "openedAt"].lazy.compactMap { name -> UInt64? in
                guard let key = try? FieldKey(parsing: name), case .register(let state)? = fields[key],
                    case .string(let text)? = state.value
                else { return nil }
                return Self.millis(ofISO: text)
            }.first
            events.append(
                StageEvent(from: nil, to: "intake", by: nil, reason: nil, atMillis: min(opened ?? setAt, setAt)))
        }
        events.sort { $0.atMillis < $1.atMillis }
        if events.last?.to != current {
            events.append(StageEvent(from: nil, to: current, by: nil, reason: nil, atMillis: setAt))
        }
        return events
    }

    /// Milliseconds since 1970 of an ISO 8601 time with its offset, or nil.
    public static func isoMillis(_ text: String) -> UInt64? { millis(ofISO: text) }

    static func millis(ofISO text: String) -> UInt64? {
        let formatter = ISO8601DateFormatter()
        for options: ISO8601DateFormatter.Options in [
            [.withInternetDateTime], [.withInternetDateTime, .withFractionalSeconds],
        ] {
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return UInt64(max(0, date.timeIntervalSince1970 * 1000)) }
        }
        return nil
    }
}

extension DeadlineRules {
    /// The deadline a case must meet next, whatever the time: the earliest of those
    /// not met (reminders and deadlines a closure ended left out), the monitoring of
    /// its plan items included. It is overdue once the moment it names has passed;
    /// the case list keeps it, so overdue and due-soon lists are one indexed query.
    public func nextDue(
        _ events: [StageEvent], fields: [FieldKey: FieldState] = [:], calendar: WorkingCalendar = .korean
    ) -> Deadline? {
        (deadlines(events, now: 0, calendar: calendar) + Self.monitoring(fields, events: events, now: 0))
            .sorted { $0.due < $1.due }.first { $0.status == .open }
    }

    /// The monitoring of the service plan at each item's own interval: an active plan
    /// item with `monitorEveryDays` is due for monitoring that many days after its
    /// last monitoring contact (`monitoredAt`), or after the case reached service
    /// provision when it has none yet. One deadline per item (`monitoring:<item>`);
    /// none once the case is closed.
    public static func monitoring(_ fields: [FieldKey: FieldState], events: [StageEvent], now: UInt64) -> [Deadline] {
        let provision = Set(["provision", "monitoring"])
        guard let provided = events.filter({ provision.contains($0.to) }).map(\.atMillis).min() else { return [] }
        if let last = events.max(by: { $0.atMillis < $1.atMillis }), last.to == "closed" || last.to == "follow-up" {
            return []
        }
        var found: [Deadline] = []
        for key in fields.keys where key.entity == "plan" && key.field == "monitorEveryDays" {
            func value(_ field: String) -> Value? {
                guard
                    case .register(let register)? = fields[
                        FieldKey(entity: "plan", instance: key.instance, field: field)]
                else { return nil }
                return register.value
            }
            guard case .integer(let days)? = value("monitorEveryDays"), (1...365).contains(days),
                value("status") == .string("active")
            else { continue }
            var from = provided
            if case .string(let text)? = value("monitoredAt"), let millis = StageEvent.isoMillis(text) {
                from = max(from, millis)
            }
            let due = CalendarDay(millis: from).adding(days: Int(days))
            found.append(
                Deadline(name: "monitoring:\(key.instance)", due: due, status: now >= due.endMillis ? .overdue : .open))
        }
        return found.sorted { $0.due < $1.due }
    }
}
