/// Formats times as ISO 8601 in UTC, the form every JSON answer and report uses.
///
/// Written by hand rather than with Foundation's `ISO8601DateFormatter`: each
/// formatter builds an ICU date format when created (tens of microseconds, and
/// a lock inside ICU), and a case page renders a time for every field, note and
/// sibling, so under API load formatting cost more than reading the case. A shared
/// formatter would serialise every request on that lock instead. The output is
/// exactly the formatter's for `.withInternetDateTime` (with
/// `.withFractionalSeconds` when `fractionalSeconds`), which a test checks.
public enum ISOTime {
    /// The latest time written: 9999-12-31T23:59:59.999Z (four-digit years only).
    public static let latestMillis: UInt64 = 253_402_300_799_999

    /// `YYYY-MM-DDTHH:MM:SS[.mmm]Z` of milliseconds since 1970, UTC; times past
    /// ``latestMillis`` are written as it.
    public static func string(millis: UInt64, fractionalSeconds: Bool = true) -> String {
        let clamped = Int(min(millis, latestMillis))
        let days = clamped / 86_400_000
        let inDay = clamped % 86_400_000
        // The civil date of a day count (Howard Hinnant's algorithm, days ≥ 0 here).
        let z = days + 719_468
        let era = z / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)

        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        func digits(_ value: Int, _ count: Int) {
            var divisor = 1
            for _ in 1..<count { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        digits(year, 4)
        bytes.append(UInt8(ascii: "-"))
        digits(month, 2)
        bytes.append(UInt8(ascii: "-"))
        digits(day, 2)
        bytes.append(UInt8(ascii: "T"))
        digits(inDay / 3_600_000, 2)
        bytes.append(UInt8(ascii: ":"))
        digits(inDay / 60_000 % 60, 2)
        bytes.append(UInt8(ascii: ":"))
        digits(inDay / 1000 % 60, 2)
        if fractionalSeconds {
            bytes.append(UInt8(ascii: "."))
            digits(inDay % 1000, 3)
        }
        bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }
}
