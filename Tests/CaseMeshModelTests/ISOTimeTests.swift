import CaseMeshCRDT
import CaseMeshModel
import Foundation
import Testing

@Suite("ISO 8601 times written by hand match Foundation's formatter")
struct ISOTimeTests {
    @Test func everyTimeIsWrittenAsFoundationWritesIt() {
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var generator = SeededGenerator(seed: 20_261_203)
        // Edges (the epoch, leap days, the turn of centuries) and random times to year 9999.
        var samples: [UInt64] = [
            0, 999, 86_399_999, 951_782_400_000, 951_868_799_999, 4_107_542_400_000, 1_798_761_599_999,
            ISOTime.latestMillis,
        ]
        for _ in 0..<20_000 { samples.append(UInt64.random(in: 0...ISOTime.latestMillis, using: &generator)) }
        for millis in samples {
            let date = Date(timeIntervalSince1970: TimeInterval(millis / 1000)).addingTimeInterval(
                TimeInterval(millis % 1000) / 1000)
            #expect(ISOTime.string(millis: millis, fractionalSeconds: false) == plain.string(from: date))
            #expect(ISOTime.string(millis: millis) == fractional.string(from: date), "\(millis)")
        }
    }

    @Test func aTimeBeyondYear9999IsWrittenAsTheLastOne() {
        #expect(ISOTime.string(millis: .max) == "9999-12-31T23:59:59.999Z")
        #expect(ISOTime.string(millis: 1_796_256_000_123) == "2026-12-03T00:00:00.123Z")
    }
}
