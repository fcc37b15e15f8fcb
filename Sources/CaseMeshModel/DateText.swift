/// Checks ISO 8601 dates and date-times in the strict forms the schema accepts.
enum DateText {
    /// `YYYY-MM-DD` with a real calendar day.
    static func isDate(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 10 else { return false }
        return isDate(bytes[...])
    }

    /// `YYYY-MM-DDTHH:MM[:SS]` followed by `Z` or `±HH:MM`.
    static func isDateTime(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count >= 17, isDate(bytes[0..<10]), bytes[10] == UInt8(ascii: "T") else { return false }
        guard let hour = number(bytes[11..<13]), bytes[13] == UInt8(ascii: ":"), let minute = number(bytes[14..<16]),
            hour < 24, minute < 60
        else { return false }
        var rest = bytes[16...]
        if rest.first == UInt8(ascii: ":") {
            guard rest.count >= 3, let second = number(rest.dropFirst().prefix(2)), second < 60 else { return false }
            rest = rest.dropFirst(3)
        }
        if rest.elementsEqual("Z".utf8) { return true }
        guard rest.count == 6, rest.first == UInt8(ascii: "+") || rest.first == UInt8(ascii: "-"),
            let offsetHour = number(rest.dropFirst().prefix(2)), rest[rest.startIndex + 3] == UInt8(ascii: ":"),
            let offsetMinute = number(rest.suffix(2))
        else { return false }
        return offsetHour < 15 && offsetMinute < 60
    }

    /// Milliseconds since the Unix epoch of a date-time in the form ``isDateTime(_:)``
    /// accepts; `nil` for anything else.
    static func millis(_ text: String) -> UInt64? {
        guard isDateTime(text) else { return nil }
        let bytes = Array(text.utf8)
        guard let year = number(bytes[0..<4]), let month = number(bytes[5..<7]), let day = number(bytes[8..<10]),
            let hour = number(bytes[11..<13]), let minute = number(bytes[14..<16])
        else { return nil }
        var rest = bytes[16...]
        var second = 0
        if rest.first == UInt8(ascii: ":") {
            second = number(rest.dropFirst().prefix(2)) ?? 0
            rest = rest.dropFirst(3)
        }
        var offsetMinutes = 0
        if rest.count == 6, let offsetHour = number(rest.dropFirst().prefix(2)),
            let offsetMinute = number(rest.suffix(2))
        {
            offsetMinutes = (offsetHour * 60 + offsetMinute) * (rest.first == UInt8(ascii: "-") ? -1 : 1)
        }
        // Days from the civil date (Howard Hinnant's algorithm), then the time of day.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60
        return seconds < 0 ? nil : UInt64(seconds) * 1000
    }

    private static func isDate(_ bytes: ArraySlice<UInt8>) -> Bool {
        let start = bytes.startIndex
        guard bytes.count == 10, bytes[start + 4] == UInt8(ascii: "-"), bytes[start + 7] == UInt8(ascii: "-"),
            let year = number(bytes[start..<start + 4]), let month = number(bytes[start + 5..<start + 7]),
            let day = number(bytes[start + 8..<start + 10]), (1...12).contains(month), day >= 1
        else { return false }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        return day <= days[month - 1]
    }

    private static func number(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}
