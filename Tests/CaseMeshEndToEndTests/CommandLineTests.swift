import Foundation
import GRDB
import Testing

/// The command line as a newcomer meets it.
@Suite struct CommandLineTests {
    @Test func versionHelpAndAMistypedSubcommandSayWhatTheyShould() throws {
        let version = try Binary.run(["--version"])
        #expect(version.status == 0 && version.stdout.hasPrefix("casemesh "), "\(version.stdout)")
        #expect(version.stdout.contains("sync protocol 2") && version.stdout.contains("case schema"))

        let typo = try Binary.run(["case", "lsit", "--data", "/nonexistent"])
        #expect(typo.status != 0)
        #expect(typo.stderr.contains("'lsit' is not a subcommand of 'casemesh case'; did you mean 'list'?"))
        #expect(!typo.stderr.contains("Unknown option '--data'"))

        for command in [["audit"], ["quarantine"], ["serve"], ["sync"], ["changes", "import"]] {
            let help = try Binary.run(command + ["--help"])
            #expect(help.status == 0)
            #expect(!help.stdout.contains("\\"), "\(command): no stray backslash")
        }
        let sync = try Binary.ok(["sync", "--help"])
        #expect(!sync.contains("--interval <"), "sync runs one round: it takes no --interval")
        let serve = try Binary.ok(["serve", "--help"]).split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(serve.contains("--interval") && serve.contains("default 30"))
        #expect(serve.contains("standard error"), "serve says where its JSON line and its log go")
    }

    /// The design lives in the project: no comment points at a file the project
    /// does not have.
    @Test func theArchitectureArticleIsInTheProjectAndNothingCitesAMissingFile() throws {
        let root = ReadmeTourTests.repository
        let article = root.appendingPathComponent("Sources/CaseMeshNode/CaseMeshNode.docc/Architecture.md")
        let text = try String(contentsOf: article, encoding: .utf8)
        #expect(text.contains("### The properties that must always hold") && text.contains("### Modules"))
        let enumerator = FileManager.default.enumerator(atPath: root.appendingPathComponent("Sources").path)
        while let path = enumerator?.nextObject() as? String {
            guard path.hasSuffix(".swift") || path.hasSuffix(".md") else { continue }
            let source = try String(contentsOf: root.appendingPathComponent("Sources/" + path), encoding: .utf8)
            #expect(!source.contains("DESIGN.md"), "\(path) cites DESIGN.md, which the project does not hold")
        }
    }
}

/// Texts that go into a change from the command line, and stores from the future.
@Suite struct CommandLineRefusalsTests {
    @Test func controlCharactersNeverEnterAnAccessEntry() throws {
        let root = Binary.temporaryDirectory("control")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        let caseID = try Binary.ok(["case", "open"] + data)
        for (flag, value) in [("--actor", "\u{1B}]0;owned\u{07}\u{1B}[2J"), ("--purpose", "visit\u{1B}[2J")] {
            let refused = try Binary.run(["case", "show", caseID, flag, value] + data)
            #expect(refused.status != 0 && refused.stderr.contains("control character"), "\(refused.stderr)")
            #expect(!refused.stdout.contains("\u{1B}") && !refused.stderr.contains("\u{1B}"))
        }
        let audit = try Binary.ok(["audit", "--case", caseID] + data)
        #expect(!audit.contains("\u{1B}"))
    }

    @Test func initOnAFileOrAnImpossiblePathSaysSoInWords() throws {
        let root = Binary.temporaryDirectory("init-file")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/not-a-directory"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        let onFile = try Binary.run(["init", "--replica", "dong.office/server", "--data", file])
        #expect(onFile.status != 0 && onFile.stderr.contains("is a file, not a directory"), "\(onFile.stderr)")
        let impossible = try Binary.run(["init", "--replica", "dong.office/server", "--data", file + "/below"])
        #expect(impossible.status != 0 && impossible.stderr.contains("cannot create the data directory"))
        for result in [onFile, impossible] { #expect(!result.stderr.contains("NSCocoaErrorDomain")) }
    }

    @Test func aStoreUpgradedByANewerCasemeshIsRefusedNamingBothVersions() throws {
        let root = Binary.temporaryDirectory("newer-store")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        try Binary.ok(["case", "open"] + data)
        let database = root + "/dong/casemesh.sqlite"
        let queue = try DatabaseQueue(path: database)
        try queue.write { db in try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('0011-future')") }
        func applied() throws -> [String] {
            try queue.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY 1") }
        }
        let before = try applied()
        let refused = try Binary.run(["case", "list"] + data)
        #expect(refused.status != 0)
        #expect(
            refused.stderr.contains("store version 11") && refused.stderr.contains("knows store version 10"),
            "\(refused.stderr)")
        #expect(try applied() == before, "nothing was migrated")
    }

    @Test func aStoreFromBeforeTheCaseListTableIsUpgradedAndListsItsCases() throws {
        let root = Binary.temporaryDirectory("upgrade-summaries")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        let opened = try Binary.ok(["case", "open", "--field", "title=김 어르신 고독사 위험"] + data)
        let caseID = opened.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").last ?? ""
        // Put the store back as store version 4 left it: no listing table.
        let queue = try DatabaseQueue(path: root + "/dong/casemesh.sqlite")
        try queue.write { db in
            try db.execute(sql: "DROP TABLE caseSummary")
            try db.execute(sql: "DROP TABLE restoreHold")
            try db.execute(sql: "DROP TABLE heldChange")
            try db.execute(sql: "DROP TABLE roleGrant")
            try db.execute(
                sql: """
                    DELETE FROM grdb_migrations WHERE identifier IN
                    ('0005-case-summaries', '0006-restore-hold', '0007-deadlines-in-listing', '0008-listing-index',
                    '0009-held-for-newer-schema', '0010-role-grants')
                    """)
        }
        let listed = try Binary.ok(["case", "list", "--json"] + data)
        #expect(listed.contains(String(caseID)) && listed.contains("김 어르신 고독사 위험"), "\(listed)")
        let applied = try queue.read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY 1")
        }
        #expect(
            applied.suffix(6) == [
                "0005-case-summaries", "0006-restore-hold", "0007-deadlines-in-listing", "0008-listing-index",
                "0009-held-for-newer-schema", "0010-role-grants",
            ])
    }

    @Test func statusShowsTheNodeAndCheckFindsADamagedStore() throws {
        let root = Binary.temporaryDirectory("status-check")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = ["--data", root + "/dong"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        let caseID = try Binary.ok(["case", "open", "--field", "riskLevel=high"] + data)
        try Binary.ok(["case", "note", caseID, "첫 상담"] + data)
        let status = try Binary.ok(["status", "--json"] + data)
        let figures = try #require(try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any])
        #expect(figures["replica"] as? String == "dong.office/server" && figures["cases"] as? Int == 1)
        #expect((figures["log_changes"] as? Int ?? 0) >= 2 && figures["quarantined"] as? Int == 0)
        #expect(try Binary.ok(["check"] + data).contains("ok"))
        // A version vector that no longer matches the log (a disk that lost a write).
        let queue = try DatabaseQueue(path: root + "/dong/casemesh.sqlite")
        try queue.write { db in
            try db.execute(sql: "UPDATE caseRecord SET version = x'' WHERE caseKey = ?", arguments: [caseID])
        }
        let damaged = try Binary.run(["check"] + data)
        #expect(damaged.status != 0 && damaged.stdout.contains("case \(caseID): its version vector"), "\(damaged)")
    }
}
