import CaseMeshCRDT
import CaseMeshModel
public import CaseMeshStore
import Foundation

/// An institution's monthly figures of joint case management, from the cases its
/// node holds (its own and those shared with it), and the privacy officer's monthly
/// review of the access log (안전성 확보조치 기준 §8). Only counts and account names:
/// no person's data.
public struct MonthlyReport: Sendable {
    /// `YYYY-MM`, in Asia/Seoul.
    public var month: String
    public var institution: String
    /// New reports received in the month, by discovery channel.
    public var newReportsByChannel: [String: Int] = [:]
    /// Every case held, by its current stage.
    public var casesByStage: [String: Int] = [:]
    /// Statutory deadlines due in the month: met on time, and missed (met late or
    /// still open past their day), by deadline.
    public var deadlinesMet: [String: Int] = [:]
    public var deadlinesMissed: [String: Int] = [:]
    /// Referrals by receiving institution and status.
    public var referrals: [String: [String: Int]] = [:]
    /// Services linked, by kind: how many, and the won recorded.
    public var resources: [String: (count: Int, won: Int64)] = [:]
    /// Cases closed in the month, by reason (as the stage event gives it).
    public var closuresByReason: [String: Int] = [:]
    /// Accesses recorded in the month by each account, by action.
    public var accessesByAccount: [String: [String: Int]] = [:]
    /// Accounts whose accesses in the month are more than three times the median
    /// account's (and at least 100): worth a look.
    public var unusualAccounts: [String] = []
    /// Exports in the month, with who, when and the stated purpose.
    public var exports: [(at: UInt64, account: String, purpose: String, via: String)] = []
    /// The case figures of the cases this institution leads (JSON, in the report's
    /// `led` member): a shared case is held by every participant but led by one, so
    /// the consortium's figures are the sum of these (``consortium(month:reports:)``).
    public var ledFigures: JSONValue = .null
    /// For a consortium report: the institutions whose reports it sums.
    public var institutions: [String] = []
    /// Whether this sums the institutions' reports (``consortium(month:reports:)``):
    /// case figures only, no access review.
    public var isConsortium = false

    /// The month's bounds, ms since 1970 (start inclusive, end exclusive).
    public static func bounds(of month: String) -> (start: UInt64, end: UInt64)? {
        let parts = month.split(separator: "-")
        guard parts.count == 2, let year = Int(parts[0]), let number = Int(parts[1]), (2000...2200).contains(year),
            (1...12).contains(number)
        else { return nil }
        let first = CalendarDay(year: year, month: number, day: 1)
        let next = first.adding(months: 1)
        return (first.startMillis, next.startMillis)
    }

    /// Builds the report from every case this node holds.
    public static func build(store: CaseStore, month: String, now: UInt64) throws -> MonthlyReport {
        guard let (start, end) = bounds(of: month) else {
            throw CaseOperations.Refusal(kind: .invalid, message: "the month is YYYY-MM, e.g. 2026-11")
        }
        func inMonth(_ millis: UInt64) -> Bool { millis >= start && millis < end }
        let own = store.replicaID.institution.rawValue
        var report = MonthlyReport(month: month, institution: own)
        var led = MonthlyReport(month: month, institution: own)
        let cases = try store.caseSummaries().map(\.caseID)
        // In pages: one read transaction per 200 cases.
        var index = 0
        while index < cases.count {
            let page = Array(cases[index..<min(index + 200, cases.count)])
            index += page.count
            let logs = try store.accessLogs(of: page)
            for snapshot in try store.snapshots(of: page).values {
                report.add(snapshot, inMonth: inMonth, now: now)
                if case .register(let lead)? = snapshot.fields[CaseField.leadInstitution], lead.value == .string(own) {
                    led.add(snapshot, inMonth: inMonth, now: now)
                }
                for entry in logs[snapshot.caseID] ?? [] where inMonth(entry.occurredAtMillis) {
                    guard entry.node.institution == store.replicaID.institution else { continue }
                    report.accessesByAccount[entry.record.actor, default: [:]][
                        entry.record.action.rawValue, default: 0] +=
                        1
                    if entry.record.action == .export {
                        report.exports.append(
                            (entry.occurredAtMillis, entry.record.actor, entry.record.purpose, entry.record.via))
                    }
                }
            }
        }
        let totals = report.accessesByAccount.mapValues { $0.values.reduce(0, +) }
        let sorted = totals.values.sorted()
        let median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        report.unusualAccounts = totals.filter { $0.value >= 100 && $0.value > 3 * median }.keys.sorted()
        report.exports.sort { $0.at < $1.at }
        report.ledFigures = led.caseFiguresJSON
        return report
    }

    /// The consortium's figures for a month: the sum of the `led` figures of each
    /// member institution's report (`casemesh report monthly` JSON), so a case
    /// shared among several institutions counts once, at its lead. The access review
    /// stays with each institution's privacy officer and is not summed.
    ///
    /// - Throws: ``CaseOperations/Refusal`` when a report is not a monthly report of
    ///   this version, is for another month, or an institution's report is given twice.
    public static func consortium(month: String, reports: [[String: Any]]) throws -> MonthlyReport {
        guard bounds(of: month) != nil else {
            throw CaseOperations.Refusal(kind: .invalid, message: "the month is YYYY-MM, e.g. 2026-11")
        }
        var total = MonthlyReport(month: month, institution: "consortium")
        total.isConsortium = true
        func counts(_ value: Any?) -> [String: Int] {
            ((value as? [String: Any]) ?? [:]).compactMapValues { ($0 as? NSNumber)?.intValue }
        }
        func add(_ into: inout [String: Int], _ value: Any?) {
            for (key, count) in counts(value) { into[key, default: 0] += count }
        }
        for (index, report) in reports.enumerated() {
            guard let institution = report["institution"] as? String, let led = report["led"] as? [String: Any]
            else {
                throw CaseOperations.Refusal(
                    kind: .invalid,
                    message: "report \(index + 1) is not a monthly report of casemesh 3 or later (no 'led')")
            }
            guard report["month"] as? String == month else {
                throw CaseOperations.Refusal(
                    kind: .invalid,
                    message: "\(institution)'s report is for \(report["month"] as? String ?? "no month"), not \(month)")
            }
            guard !total.institutions.contains(institution) else {
                throw CaseOperations.Refusal(kind: .invalid, message: "\(institution)'s report is given twice")
            }
            total.institutions.append(institution)
            add(&total.newReportsByChannel, led["newReportsByChannel"])
            add(&total.casesByStage, led["casesByStage"])
            let deadlines = led["deadlines"] as? [String: Any]
            add(&total.deadlinesMet, deadlines?["met"])
            add(&total.deadlinesMissed, deadlines?["missed"])
            for (to, statuses) in (led["referrals"] as? [String: Any]) ?? [:] {
                add(&total.referrals[to, default: [:]], statuses)
            }
            for (kind, value) in (led["resources"] as? [String: Any]) ?? [:] {
                let object = value as? [String: Any]
                let before = total.resources[kind] ?? (0, 0)
                total.resources[kind] = (
                    before.count + ((object?["count"] as? NSNumber)?.intValue ?? 0),
                    before.won &+ ((object?["won"] as? NSNumber)?.int64Value ?? 0)
                )
            }
            add(&total.closuresByReason, led["closuresByReason"])
        }
        total.institutions.sort()
        return total
    }

    mutating func add(_ snapshot: CaseSnapshot, inMonth: (UInt64) -> Bool, now: UInt64) {
        func register(_ name: String) -> Value? {
            guard let key = try? FieldKey(parsing: name), case .register(let state)? = snapshot.fields[key] else {
                return nil
            }
            return state.value
        }
        if case .string(let received)? = register("report.receivedAt"), let millis = StageEvent.isoMillis(received),
            inMonth(millis)
        {
            let channel = register("report.channel").map(\.description) ?? "unknown"
            newReportsByChannel[channel, default: 0] += 1
        }
        casesByStage[register("stage").map(\.description) ?? "none", default: 0] += 1
        let events = StageEvent.events(in: snapshot.fields)
        for deadline in DeadlineRules.bundled.deadlines(events, now: now) where inMonth(deadline.due.lastMillis) {
            switch deadline.status {
            case .met(_, let onTime):
                if onTime {
                    deadlinesMet[deadline.name, default: 0] += 1
                } else {
                    deadlinesMissed[deadline.name, default: 0] += 1
                }
            case .overdue: deadlinesMissed[deadline.name, default: 0] += 1
            default: break
            }
        }
        for event in events where event.to == "closed" && inMonth(event.atMillis) {
            let reason = event.reason ?? register("closedReason").map(\.description) ?? "unstated"
            closuresByReason[reason, default: 0] += 1
        }
        let instances = { (entity: String) in
            Set(snapshot.fields.keys.filter { $0.entity == entity }.map(\.instance)).sorted()
        }
        for instance in instances("referral") {
            let referral = CaseOperations.referral(instance: instance, in: snapshot)
            let status = referral.conflict.isEmpty ? referral.status?.rawValue ?? "unknown" : "conflict"
            referrals[referral.to ?? "unknown", default: [:]][status, default: 0] += 1
        }
        for instance in instances("service") {
            guard let status = register("service#\(instance).status")?.description, status != "planned" else {
                continue
            }
            let kind = register("service#\(instance).kind").map(\.description) ?? "other"
            var won: Int64 = 0
            if case .integer(let amount)? = register("service#\(instance).amountWon") { won = amount }
            let before = resources[kind] ?? (0, 0)
            resources[kind] = (before.count + 1, before.won &+ won)
        }
    }

    // MARK: CSV

    /// The report as CSV files (UTF-8 with a byte-order mark, so Excel opens them in
    /// Korean), by file name: Korean headers, Korean channel, stage and deadline
    /// names beside the schema's codes.
    public func csvFiles(labels: [String: String] = MonthlyReport.koreanLabels) -> [String: [UInt8]] {
        func label(_ code: String) -> String { labels[code] ?? code }
        func file(_ header: [String], _ rows: [[String]]) -> [UInt8] {
            var text = "\u{FEFF}" + header.map(Self.field).joined(separator: ",") + "\r\n"
            for row in rows { text += row.map(Self.field).joined(separator: ",") + "\r\n" }
            return Array(text.utf8)
        }
        let prefix = "casemesh-\(month)-"
        var files: [String: [UInt8]] = [:]
        files[prefix + "new-reports.csv"] = file(
            ["월", "발굴 경로", "코드", "신규 신고 건수"],
            newReportsByChannel.sorted { $0.key < $1.key }.map { [month, label($0.key), $0.key, "\($0.value)"] })
        files[prefix + "cases-by-stage.csv"] = file(
            ["월", "단계", "코드", "사례 수"],
            casesByStage.sorted { $0.key < $1.key }.map { [month, label($0.key), $0.key, "\($0.value)"] })
        let deadlineNames = Set(deadlinesMet.keys).union(deadlinesMissed.keys).sorted()
        files[prefix + "deadlines.csv"] = file(
            ["월", "법정 기한", "코드", "기한 내 완료", "기한 초과"],
            deadlineNames.map {
                [month, label($0), $0, "\(deadlinesMet[$0] ?? 0)", "\(deadlinesMissed[$0] ?? 0)"]
            })
        files[prefix + "referrals.csv"] = file(
            ["월", "의뢰받은 기관", "상태", "건수"],
            referrals.sorted { $0.key < $1.key }.flatMap { to, statuses in
                statuses.sorted { $0.key < $1.key }.map { [month, to, label($0.key), "\($0.value)"] }
            })
        files[prefix + "resources.csv"] = file(
            ["월", "서비스 종류", "코드", "건수", "금액(원)"],
            resources.sorted { $0.key < $1.key }.map {
                [month, label($0.key), $0.key, "\($0.value.count)", "\($0.value.won)"]
            })
        files[prefix + "closures.csv"] = file(
            ["월", "종결 사유", "건수"], closuresByReason.sorted { $0.key < $1.key }.map { [month, $0.key, "\($0.value)"] })
        // The consortium's figures are case figures only; each institution's privacy
        // officer reviews its own access log.
        if isConsortium {
            files[prefix + "institutions.csv"] = file(["월", "합산한 기관"], institutions.map { [month, $0] })
            return files.mapKeys { "casemesh-consortium-" + $0.dropFirst("casemesh-".count) }
        }
        files[prefix + "access-review.csv"] = file(
            ["월", "계정", "열람", "변경", "개설", "반출", "검토 필요"],
            accessesByAccount.sorted { $0.key < $1.key }.map { account, actions in
                [
                    month, account, "\(actions["read"] ?? 0)", "\(actions["write"] ?? 0)", "\(actions["open"] ?? 0)",
                    "\(actions["export"] ?? 0)", unusualAccounts.contains(account) ? "예" : "",
                ]
            })
        files[prefix + "exports.csv"] = file(
            ["일시", "계정", "목적", "경로"],
            exports.map { [CaseRendering.time(millis: $0.at), $0.account, $0.purpose, $0.via] })
        return files
    }

    /// One CSV field, quoted when it holds a comma, a quote or a line break; a field
    /// that a spreadsheet would run as a formula is prefixed with a quote mark.
    static func field(_ text: String) -> String {
        var value = text
        if let first = value.first, "=+-@".contains(first), Int64(value) == nil { value = "'" + value }
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Korean names of the codes in the report (channels, stages, deadlines, statuses,
    /// service kinds), as the glossary gives them.
    public static let koreanLabels: [String: String] = [
        "kakao": "카카오톡 채널", "sns": "SNS", "hotline-080": "080 무료전화", "hotline-129": "보건복지상담센터 129",
        "iot-smart-plug": "스마트플러그", "safety-app": "안전앱", "neighbour": "이웃 제보",
        "institution-referral": "기관 의뢰", "bigdata": "복지사각지대 발굴시스템", "self": "본인 신청",
        "discovery": "발굴", "intake": "접수", "assessment": "욕구사정", "conference": "사례회의", "planning": "서비스계획",
        "provision": "서비스제공", "monitoring": "모니터링", "closed": "종결", "follow-up": "사후관리", "none": "미정",
        "selection": "대상자 선정", "plan": "서비스 제공계획", "followUp3": "사후관리 (3개월)", "followUp6": "사후관리 (6개월)",
        "requested": "의뢰함", "accepted": "수락", "declined": "거절", "revoked": "취소", "completed": "완료",
        "in-progress": "진행 중", "done": "완료", "withdrawn": "철회", "conflict": "충돌 (검토 필요)",
        "emergency-welfare": "긴급복지", "basic-livelihood": "기초생활수급", "housing-support": "주거 지원",
        "meal-delivery": "도시락 배달", "home-care": "재가 돌봄", "counselling": "상담", "medical": "의료",
        "private-donation": "민간 후원", "employment-support": "취업 지원", "other": "기타", "unknown": "미상",
    ]

    /// The case figures alone (no access review), as JSON.
    var caseFiguresJSON: JSONValue {
        func counts(_ values: [String: Int]) -> JSONValue { .object(values.mapValues { .number(Int64($0)) }) }
        return .object([
            "newReportsByChannel": counts(newReportsByChannel), "casesByStage": counts(casesByStage),
            "deadlines": .object(["met": counts(deadlinesMet), "missed": counts(deadlinesMissed)]),
            "referrals": .object(referrals.mapValues(counts)),
            "resources": .object(
                resources.mapValues { .object(["count": .number(Int64($0.count)), "won": .number($0.won)]) }),
            "closuresByReason": counts(closuresByReason),
        ])
    }

    /// The report as JSON (for `GET /api/v1/reports/monthly`).
    public var json: JSONValue {
        func counts(_ values: [String: Int]) -> JSONValue { .object(values.mapValues { .number(Int64($0)) }) }
        guard case .object(var figures) = caseFiguresJSON else { return .null }
        figures["month"] = .string(month)
        figures["institution"] = .string(institution)
        if isConsortium {
            figures["institutions"] = .array(institutions.map(JSONValue.string))
            return .object(figures)
        }
        figures["led"] = ledFigures
        return .object(
            figures.merging([
                "accessReview": .object([
                    "byAccount": .object(accessesByAccount.mapValues(counts)),
                    "unusualAccounts": .array(unusualAccounts.map(JSONValue.string)),
                    "exports": .array(
                        exports.map {
                            .object([
                                "at": .string(CaseRendering.time(millis: $0.at)), "account": .string($0.account),
                                "purpose": .string($0.purpose), "via": .string($0.via),
                            ])
                        }),
                ])
            ]) { _, new in new })
    }
}

extension Dictionary {
    func mapKeys<T: Hashable>(_ transform: (Key) -> T) -> [T: Value] {
        Dictionary<T, Value>(uniqueKeysWithValues: map { (transform($0.key), $0.value) })
    }
}
