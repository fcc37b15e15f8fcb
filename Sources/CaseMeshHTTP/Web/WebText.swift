import CaseMeshCRDT
import CaseMeshModel
import Foundation

/// The web app's words in one language: one catalogue per language
/// (`Resources/web/ko.json`, `en.json`), Korean first. A key missing from the
/// English catalogue falls back to a readable form of the schema's own name, never
/// to Korean mixed into an English page.
struct WebCatalogue: Sendable {
    let language: String
    let strings: [String: String]

    static let korean = WebCatalogue(language: "ko", json: PackageResources.ko_json)
    static let english = WebCatalogue(language: "en", json: PackageResources.en_json)

    static func forLanguage(_ code: String?) -> WebCatalogue { code == "en" ? english : korean }

    init(language: String, json: [UInt8]) {
        self.language = language
        // The catalogues are part of the binary and checked by the tests; a broken
        // one is a build defect, shown as keys rather than a crash.
        let decoded = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: String]
        strings = decoded ?? [:]
    }

    subscript(_ key: String) -> String { strings[key] ?? key }

    /// A text with `{name}` placeholders filled in.
    func format(_ key: String, _ values: [String: String]) -> String {
        var text = self[key]
        for (name, value) in values { text = text.replacingOccurrences(of: "{\(name)}", with: value) }
        return text
    }

    func stage(_ value: String?) -> String {
        guard let value else { return self["risk_none"] }
        return strings["stage_\(value)"] ?? value
    }

    func risk(_ value: String?) -> String { strings["risk_\(value ?? "none")"] ?? value ?? self["risk_none"] }

    func group(_ entity: String) -> String { strings["group_\(entity)"] ?? Self.readable(entity) }

    /// A deadline's name: a statutory one, or a plan item's monitoring (`monitoring:p1`).
    func deadline(_ name: String) -> String {
        guard name.hasPrefix("monitoring:") else { return self["deadline_\(name)"] }
        return "\(self["deadline_monitoring"]) (\(name.dropFirst("monitoring:".count)))"
    }

    func field(_ key: FieldKey) -> String {
        strings["field_\(key.entity).\(key.field)"] ?? Self.readable(key.field)
    }

    /// An enum value as case workers say it.
    func value(_ raw: String) -> String { strings["value_\(raw)"] ?? raw.replacingOccurrences(of: "-", with: " ") }

    func role(_ raw: String) -> String { strings["role_\(raw)"] ?? raw }

    /// `riskLevel` → "risk level".
    static func readable(_ name: String) -> String {
        var words = ""
        for character in name {
            if character.isUppercase, !words.isEmpty { words.append(" ") }
            words.append(character.lowercased())
        }
        return words
    }

    /// Seconds as the largest unit that is at least 1 ("3분", "2 h").
    func duration(seconds: Double) -> String {
        let value = max(0, seconds)
        if value < 60 { return format("seconds", ["n": "\(Int(value))"]) }
        if value < 3600 { return format("minutes", ["n": "\(Int(value / 60))"]) }
        if value < 86_400 { return format("hours", ["n": "\(Int(value / 3600))"]) }
        return format("days", ["n": "\(Int(value / 86_400))"])
    }

    /// A time as case workers read it, in Asia/Seoul: `2026. 12. 2. (수) 14:05`
    /// in Korean, `Wed 2 Dec 2026, 14:05` in English.
    func time(millis: UInt64) -> String {
        let date = Date(timeIntervalSince1970: Double(millis) / 1000)
        let parts = Self.seoulCalendar.dateComponents([.year, .month, .day, .weekday, .hour, .minute], from: date)
        let weekdays = self["weekdays"].split(separator: ",").map(String.init)
        let weekday = weekdays.indices.contains((parts.weekday ?? 1) - 1) ? weekdays[(parts.weekday ?? 1) - 1] : ""
        let clock = String(format: "%02d:%02d", parts.hour ?? 0, parts.minute ?? 0)
        if language == "en" {
            let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            let month = months[min(max((parts.month ?? 1) - 1, 0), 11)]
            return "\(weekday) \(parts.day ?? 1) \(month) \(parts.year ?? 1970), \(clock)"
        }
        return "\(parts.year ?? 1970). \(parts.month ?? 1). \(parts.day ?? 1). (\(weekday)) \(clock)"
    }

    /// A date alone (`2026. 12. 2.`), for deadlines.
    func date(millis: UInt64) -> String {
        let date = Date(timeIntervalSince1970: Double(millis) / 1000)
        let parts = Self.seoulCalendar.dateComponents([.year, .month, .day], from: date)
        if language == "en" {
            return String(format: "%04d-%02d-%02d", parts.year ?? 1970, parts.month ?? 1, parts.day ?? 1)
        }
        return "\(parts.year ?? 1970). \(parts.month ?? 1). \(parts.day ?? 1)."
    }

    static var seoulCalendar: Calendar { CalendarDay.seoul }

    /// Milliseconds since 1970 of a schema `datetime` or `date` text (ISO 8601; a
    /// date alone is midnight in Seoul), or nil.
    static func millis(ofISO text: String) -> UInt64? {
        if let moment = StageEvent.isoMillis(text) { return moment }
        return text.count == 10 ? CalendarDay(text)?.startMillis : nil
    }
}
