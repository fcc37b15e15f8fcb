import CaseMeshStore
import Foundation
import GRDB
import Testing

/// What a withdrawn institution's nodes hold, over real processes: every kind of node
/// (one that only listens, one that dials out, a laptop that only takes bundles)
/// purges within one exchange, once its own edits have gone out; a new node of the
/// institution never receives anything of the case.
@Suite(.serialized) struct DepartureTests {
    static let name = "NAME-Kim-Minsu-1947"
    static let note = "NOTE-diagnosed-with-dementia"

    /// Whether any of these personal-data markers is in the node's database files.
    static func holdsPersonalData(_ data: String) throws -> Bool {
        try ConsentTests.databaseContains(data, name) || ConsentTests.databaseContains(data, note)
    }

    /// The rows that hold anything of the case itself (its access log is a case of
    /// its own, with no personal data, which the institution keeps by law).
    static func caseRows(_ data: String, _ caseID: String) throws -> Int {
        let queue = try DatabaseQueue(path: data + "/" + CaseStore.databaseFileName)
        let notices = try queue.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM departureNotice WHERE caseKey = ?", arguments: [caseID])
                ?? 0
        }
        return try ConsentTests.rows(data, caseID).values.reduce(notices, +)
    }

    @Test func everyKindOfNodeOfAWithdrawnInstitutionPurgesAndANewNodeGetsNothing() throws {
        let root = Binary.temporaryDirectory("departure")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root,
            [
                "dong": "dong.office/server", "mental": "mental.centre/server",
                "listener": "senior.centre/server", "dialer": "senior.centre/laptop-1",
                "usb": "senior.centre/laptop-2", "fresh": "senior.centre/laptop-3",
                "freshUSB": "senior.centre/laptop-4",
            ])
        let tls = consortium.tls
        func data(_ short: String) -> [String] { consortium.data(short) }
        func path(_ short: String) -> String { root + "/" + short }
        func signing(_ short: String) -> [String] { Array(tls[short]!.prefix(6)) }
        let verify = Array(tls["dong"]!.suffix(4))

        let dong = try NodeProcess(data("dong") + tls["dong"]!, logPath: root + "/dong.log")
        defer { dong.stop() }
        let listener = try NodeProcess(data("listener") + tls["listener"]!, logPath: root + "/listener.log")
        defer { listener.stop() }
        func dongDialsListener() throws {
            try Binary.ok(
                ["sync"] + data("dong") + tls["dong"]! + ["--peer", "senior.centre/server=\(listener.address)"])
        }
        func dialerSyncs() throws -> String {
            try Binary.ok(
                ["sync"] + data("dialer") + tls["dialer"]! + ["--peer", "dong.office/server=\(dong.address)"])
        }
        func bundle(to short: String) throws {
            try Binary.ok(
                ["changes", "export", "--out", root + "/to-senior.cmb", "--for", "senior.centre"] + data("dong")
                    + signing("dong"))
            try Binary.ok(["changes", "import", root + "/to-senior.cmb"] + data(short) + verify)
        }

        // The dong centre opens the case and shares it with two institutions.
        let caseID = try Binary.ok(["case", "open", "--field", "riskLevel=crisis"] + data("dong"))
        try Binary.ok(["case", "set", caseID, "person#p1.name", Self.name] + data("dong"))
        try Binary.ok(["case", "note", caseID, Self.note] + data("dong"))
        try Binary.ok(
            ["case", "share", caseID, "senior.centre", "--allow-new-institution", "senior.centre"] + data("dong"))
        try Binary.ok(
            ["case", "share", caseID, "mental.centre", "--allow-new-institution", "mental.centre"] + data("dong"))
        try dongDialsListener()
        _ = try dialerSyncs()
        try bundle(to: "usb")
        for short in ["listener", "dialer", "usb"] {
            #expect(try Self.holdsPersonalData(path(short)), "\(short) received the case")
        }

        // Each senior node writes its own edit of the case before it learns of the end.
        try Binary.ok(["case", "note", caseID, "LISTENER-visit"] + data("listener"))
        try Binary.ok(["case", "note", caseID, "DIALER-visit"] + data("dialer"))
        try Binary.ok(["case", "note", caseID, "USB-visit"] + data("usb"))

        // The household withdraws its consent for the senior centre.
        try Binary.ok(["case", "withdraw", caseID, "senior.centre"] + data("dong"))

        // The node that only listens: one session dialled by the dong centre.
        try dongDialsListener()
        #expect(
            try eventually(15) { try !Self.holdsPersonalData(path("listener")) },
            "the listening node purged after serving: \(listener.log)")
        // The node that dials out: one sync.
        let report = try dialerSyncs()
        #expect(report.contains("purged \(caseID)"), "\(report)")
        #expect(try !Self.holdsPersonalData(path("dialer")))
        // The bundle-only laptop: one bundle in. Its own edit has not gone out yet, so it
        // keeps the case but shows none of it; one bundle out, and it purges.
        try bundle(to: "usb")
        let hidden = try Binary.run(["case", "show", caseID] + data("usb"))
        #expect(hidden.status != 0 && hidden.stderr.contains("withdrawn"), "\(hidden.stderr)")
        #expect(!hidden.stdout.contains(Self.name))
        let out = try Binary.ok(
            ["changes", "export", "--out", root + "/from-usb.cmb"] + data("usb") + signing("usb"))
        #expect(out.contains("purged \(caseID)"), "\(out)")
        #expect(try !Self.holdsPersonalData(path("usb")))
        try Binary.ok(["changes", "import", root + "/from-usb.cmb"] + data("dong") + verify)

        for short in ["listener", "dialer", "usb"] {
            let shown = try Binary.run(["case", "show", caseID] + data(short))
            #expect(shown.status != 0 && shown.stderr.contains("purged"), "\(short): \(shown.stderr)")
            #expect(try Self.caseRows(path(short), caseID) == 0, "\(short) holds no field or pending change")
        }
        // Nothing they wrote is lost: the lead holds every senior node's edit.
        try dongDialsListener()
        let lead = try NetworkTests.show(path("dong"), caseID) ?? ""
        for visit in ["LISTENER-visit", "DIALER-visit", "USB-visit"] {
            #expect(lead.contains(visit), "the lead holds \(visit)")
        }

        // A new node of the withdrawn institution, by sync or by bundle, gets nothing.
        try Binary.ok(["sync"] + data("fresh") + tls["fresh"]! + ["--peer", "dong.office/server=\(dong.address)"])
        try bundle(to: "freshUSB")
        for short in ["fresh", "freshUSB"] {
            #expect(try !Self.holdsPersonalData(path(short)), "\(short) holds nothing of the person")
            #expect(try Self.caseRows(path(short), caseID) == 0, "\(short) holds no field, pending change or notice")
            #expect(try !ConsentTests.databaseContains(path(short), "LISTENER-visit"))
            #expect(try NetworkTests.show(path(short), caseID) == nil)
        }
    }
}
