import Foundation
import Testing

/// Shares, withdrawals and notes that make no sense are refused with a reason, and
/// leave the case as it was.
@Suite struct SharingRulesTests {
    @Test func sharesWithdrawalsAndNotesThatMakeNoSenseAreRefused() throws {
        let root = Binary.temporaryDirectory("sharing-rules")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dong = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + dong)
        let caseID = try Binary.ok(["case", "open", "--field", "riskLevel=high"] + dong)
        func version() throws -> String {
            let shown = try Binary.ok(["case", "show", caseID, "--json"] + dong)
            let object = try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [String: Any]
            return "\(object?["version"] ?? "")"
        }
        let before = try version()
        func refused(_ arguments: [String], _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws
        {
            let result = try Binary.run(arguments + dong)
            #expect(result.status != 0, "refused: \(arguments)", sourceLocation: sourceLocation)
            #expect(result.stderr.contains(reason), "\(result.stderr)", sourceLocation: sourceLocation)
            #expect(result.stderr.split(separator: "\n").count == 1, "one line", sourceLocation: sourceLocation)
        }
        // An institution no certificate or change was ever seen from.
        try refused(["case", "share", caseID, "mental-health"], "no node of mental-health is known here")
        try refused(["case", "add", caseID, "participants", "mental-health"], "--allow-new-institution")
        // A consent that has already ended, or whose end is not a date.
        try refused(
            ["case", "share", caseID, "dong.office", "--until", "2020-01-01T00:00:00+09:00"], "has already passed")
        try refused(["case", "share", caseID, "dong.office", "--until", "next tuesday"], "is not a date-time")
        // Withdrawing from an institution that never had the case.
        try refused(["case", "withdraw", caseID, "senior.centre"], "holds no consent on case")
        // An empty note.
        try refused(["case", "note", caseID, ""], "empty entry")
        try refused(["case", "note", caseID, "   "], "empty entry")
        #expect(try version() == before, "nothing was recorded")

        // Named explicitly, a new institution is accepted, and can then be withdrawn.
        try Binary.ok(["case", "share", caseID, "mental.centre", "--allow-new-institution", "mental.centre"] + dong)
        try Binary.ok(["case", "withdraw", caseID, "mental.centre"] + dong)
    }

    /// The access log names the operating-system account when `$USER` is unset (as
    /// under systemd, or as root in a container), never "unknown".
    @Test func theAccessLogNamesTheAccountWithoutUSER() throws {
        let root = Binary.temporaryDirectory("actor")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dong = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + dong)
        let caseID = try Binary.ok(["case", "open"] + dong)
        let process = Process()
        process.executableURL = Binary.url
        process.arguments = ["case", "show", caseID] + dong
        process.environment = ProcessInfo.processInfo.environment.filter { $0.key != "USER" && $0.key != "LOGNAME" }
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let audit = try Binary.ok(["audit", "--case", caseID, "--json"] + dong)
        let account = String(cString: getpwuid(geteuid())!.pointee.pw_name)
        #expect(audit.contains("\"actor\":\"\(account)\""), "\(audit)")
        #expect(!audit.contains("unknown"))
    }
}
