import Foundation
import Testing

/// The monthly report as an institution files it: CSV files that open in Excel in
/// Korean, read back here.
@Suite struct MonthlyReportTests {
    /// Reads a CSV file the way a spreadsheet does: the byte-order mark, then rows.
    static func rows(_ path: String) throws -> (bom: Bool, rows: [[String]]) {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let bom = bytes.starts(with: [0xEF, 0xBB, 0xBF])
        let text = String(decoding: bom ? Array(bytes.dropFirst(3)) : bytes, as: UTF8.self)
        return (
            bom,
            text.split(separator: "\r\n").map {
                $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            }
        )
    }

    @Test func theMonthlyCSVFilesHaveKoreanHeadersAndTheMonthsFigures() throws {
        let root = Binary.temporaryDirectory("monthly")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        // The month in Seoul, where the report's months are.
        var seoul = Calendar(identifier: .gregorian)
        seoul.timeZone = TimeZone(identifier: "Asia/Seoul")!
        let parts = seoul.dateComponents([.year, .month], from: Date())
        let month = String(format: "%04d-%02d", parts.year!, parts.month!)
        let received = ISO8601DateFormatter().string(from: Date())
        var cases: [String] = []
        for channel in ["kakao", "kakao", "hotline-129"] {
            cases.append(
                try Binary.ok(
                    [
                        "case", "open", "--field", "report.channel=\(channel)", "--field",
                        "report.receivedAt=\(received)",
                        "--field", "stage=discovery",
                    ] + data))
        }
        try Binary.ok(["case", "stage", cases[0], "intake"] + data)
        try Binary.ok(["case", "set", cases[0], "service#s1.kind", "emergency-welfare"] + data)
        try Binary.ok(["case", "set", cases[0], "service#s1.status", "active"] + data)
        try Binary.ok(["case", "set", cases[0], "service#s1.amountWon", "1200000"] + data)
        try Binary.ok(["case", "set", cases[0], "referral#r1.to", "senior.centre"] + data)
        // Only the senior centre may accept it (RoleRuleTests); the referrer records it done.
        #expect(try Binary.run(["case", "set", cases[0], "referral#r1.status", "accepted"] + data).status != 0)
        try Binary.ok(["case", "set", cases[0], "referral#r1.status", "completed"] + data)
        try Binary.ok(["case", "stage", cases[1], "closed", "--reason", "전출"] + data)
        try Binary.ok(["case", "show", cases[2], "--actor", "김민지 (kim)"] + data)

        let out = root + "/report"
        let written = try Binary.ok(["report", "monthly", "--month", month, "--csv", out] + data)
        #expect(written.split(separator: "\n").count == 8, "\(written)")
        let channels = try Self.rows(out + "/casemesh-\(month)-new-reports.csv")
        #expect(channels.bom, "UTF-8 with a byte-order mark, for Excel")
        #expect(channels.rows.first == ["월", "발굴 경로", "코드", "신규 신고 건수"])
        #expect(channels.rows.contains([month, "카카오톡 채널", "kakao", "2"]))
        #expect(channels.rows.contains([month, "보건복지상담센터 129", "hotline-129", "1"]))
        let stages = try Self.rows(out + "/casemesh-\(month)-cases-by-stage.csv").rows
        #expect(stages.contains([month, "접수", "intake", "1"]) && stages.contains([month, "종결", "closed", "1"]))
        #expect(try Self.rows(out + "/casemesh-\(month)-closures.csv").rows.contains([month, "전출", "1"]))
        let resources = try Self.rows(out + "/casemesh-\(month)-resources.csv").rows
        #expect(resources.contains([month, "긴급복지", "emergency-welfare", "1", "1200000"]), "\(resources)")
        #expect(
            try Self.rows(out + "/casemesh-\(month)-referrals.csv").rows.contains([month, "senior.centre", "완료", "1"]))
        let review = try Self.rows(out + "/casemesh-\(month)-access-review.csv").rows
        #expect(review.first == ["월", "계정", "열람", "변경", "개설", "반출", "검토 필요"])
        #expect(review.contains { $0.count > 2 && $0[1] == "김민지 (kim)" && $0[2] == "1" }, "\(review)")
        // JSON without --csv; a bad month is refused.
        #expect(try Binary.ok(["report", "monthly", "--month", month] + data).contains("\"newReportsByChannel\""))
        let bad = try Binary.run(["report", "monthly", "--month", "2026-13"] + data)
        #expect(bad.status != 0 && bad.stderr.contains("YYYY-MM"))
    }

    /// The consortium's figures sum the institutions' reports, and a case shared
    /// between two institutions counts once, at its lead.
    @Test(.timeLimit(.minutes(2)))
    func theConsortiumFiguresCountASharedCaseOnce() throws {
        let root = Binary.temporaryDirectory("monthly-consortium")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["dong": "dong.office/server", "senior": "senior.centre/server"])
        var seoul = Calendar(identifier: .gregorian)
        seoul.timeZone = TimeZone(identifier: "Asia/Seoul")!
        let parts = seoul.dateComponents([.year, .month], from: Date())
        let month = String(format: "%04d-%02d", parts.year!, parts.month!)
        let received = ISO8601DateFormatter().string(from: Date())
        func open(_ node: String, _ channel: String) throws -> String {
            try Binary.ok(
                ["case", "open", "--field", "report.channel=\(channel)", "--field", "report.receivedAt=\(received)"]
                    + consortium.data(node)
            ).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let shared = try open("dong", "kakao")
        _ = try open("dong", "hotline-129")
        _ = try open("senior", "kakao")
        try Binary.ok(
            ["case", "share", shared, "senior.centre", "--allow-new-institution", "senior.centre"]
                + consortium.data("dong"))
        let dong = try NodeProcess(consortium.data("dong") + consortium.tls["dong"]!, logPath: root + "/dong.log")
        defer { dong.stop() }
        try Binary.ok(
            ["sync", "--peer", "dong.office/server=\(dong.address)"] + consortium.data("senior")
                + consortium.tls["senior"]!)
        var files: [String] = []
        for node in ["dong", "senior"] {
            let path = root + "/\(node).json"
            try Binary.ok(["report", "monthly", "--month", month] + consortium.data(node))
                .write(toFile: path, atomically: true, encoding: .utf8)
            files.append(path)
        }
        // The senior centre's own report counts the shared case among the cases it holds.
        let seniorReport = try String(contentsOfFile: files[1], encoding: .utf8)
        #expect(seniorReport.contains(#""kakao":2"#), "\(seniorReport)")
        let total = try Binary.ok(["report", "consortium", "--month", month] + files)
        let figures = try #require(try JSONSerialization.jsonObject(with: Data(total.utf8)) as? [String: Any])
        #expect(figures["newReportsByChannel"] as? [String: Int] == ["kakao": 2, "hotline-129": 1], "\(total)")
        #expect((figures["casesByStage"] as? [String: Int])?.values.reduce(0, +) == 3, "\(total)")
        #expect(figures["institutions"] as? [String] == ["dong.office", "senior.centre"])
        let out = root + "/csv"
        try Binary.ok(["report", "consortium", "--month", month, "--csv", out] + files)
        let channels = try Self.rows(out + "/casemesh-consortium-\(month)-new-reports.csv")
        #expect(channels.bom && channels.rows.first == ["월", "발굴 경로", "코드", "신규 신고 건수"])
        #expect(channels.rows.contains([month, "카카오톡 채널", "kakao", "2"]), "\(channels.rows)")
        // The same institution twice, or another month, is refused.
        let twice = try Binary.run(["report", "consortium", "--month", month, files[0], files[0]])
        #expect(twice.status != 0 && twice.stderr.contains("given twice"), "\(twice.stderr)")
        let other = try Binary.run(["report", "consortium", "--month", "2020-01"] + files)
        #expect(other.status != 0 && other.stderr.contains("not 2020-01"), "\(other.stderr)")
    }
}
