import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore
import Foundation
import Testing

/// Bad input from a file or a user: refused with a one-line error and a non-zero
/// exit, and the store left exactly as it was.
@Suite struct BadInputTests {
    struct Replica {
        let root: String
        let data: [String]
        let caseID: String
        /// The test CA's certificate and the senior laptop's certificate and key.
        let verify: [String]
        let laptop: [String]

        /// Everything a user can see of the replica, to compare before and after.
        func visibleState() throws -> String {
            try Binary.ok(["case", "list", "--json"] + data) + Binary.ok(["case", "show", caseID, "--json"] + data)
                + Binary.ok(["conflicts", "--json"] + data)
        }
    }

    func makeReplica(_ name: String) throws -> Replica {
        let root = Binary.temporaryDirectory(name)
        let data = ["--data", root + "/replica"]
        try Binary.ok(["init", "--replica", "dong.office/server"] + data)
        let caseID = try Binary.ok(["case", "open", "--field", "riskLevel=high"] + data)
        try Binary.ok(["case", "note", caseID, "first visit"] + data)
        let authority = try TestAuthority(in: root)
        return Replica(
            root: root, data: data, caseID: caseID,
            verify: ["--ca", authority.directory + "/ca.pem", "--crl", authority.directory + "/crl.pem"],
            laptop: try authority.issue("senior.centre/laptop-1"))
    }

    func expectRefused(
        _ arguments: [String], on replica: Replica, mentioning text: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let before = try replica.visibleState()
        let verifying = arguments.starts(with: ["changes", "import"]) ? replica.verify : []
        let result = try Binary.run(arguments + replica.data + verifying)
        #expect(result.status != 0, "expected a refusal", sourceLocation: sourceLocation)
        let errorLines = result.stderr.split(separator: "\n")
        #expect(errorLines.count == 1, "one-line error, got: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(
            result.stderr.contains(text), "error '\(result.stderr)' should mention '\(text)'",
            sourceLocation: sourceLocation)
        #expect(try replica.visibleState() == before, "the store is unchanged", sourceLocation: sourceLocation)
    }

    /// A bundle, as another replica would write it (sealed by it), holding `changes`.
    func writeBundle(
        _ changes: [Change], for replica: Replica, schemaVersion: Int = CaseSchema.bundled.version, to path: String
    ) throws {
        let bundle = try SealedBundle.make(
            changes, origin: try ReplicaID("senior.centre/laptop-1"), tls: replica.laptop, schemaVersion: schemaVersion,
            createdAtMillis: 1_763_856_000_000)
        try Data(bundle.encoded()).write(to: URL(fileURLWithPath: path))
    }

    func change(for replica: Replica, ops: [FieldOperation], hlc: UInt64 = SystemWallClock().nowMillis()) throws
        -> Change
    {
        Change(
            caseID: try CaseID(replica.caseID), origin: try ReplicaID("senior.centre/laptop-1"), seq: 1,
            hlc: HybridTimestamp(physical: hlc), context: VersionVector([try ReplicaID("dong.office/server"): 2]),
            ops: ops)
    }

    @Test func truncatedAndCorruptedBundlesAreRefused() throws {
        let replica = try makeReplica("corrupt")
        defer { try? FileManager.default.removeItem(atPath: replica.root) }
        let source = Binary.temporaryDirectory("corrupt-source")
        defer { try? FileManager.default.removeItem(atPath: source) }
        try Binary.ok(["init", "--replica", "senior.centre/laptop-1", "--data", source])
        try Binary.ok(["case", "open", "--data", source])
        try Binary.ok(["changes", "export", "--out", source + "/good.cmb", "--data", source])
        let good = try Data(contentsOf: URL(fileURLWithPath: source + "/good.cmb"))

        try good.prefix(good.count / 2).write(to: URL(fileURLWithPath: source + "/truncated.cmb"))
        try expectRefused(
            ["changes", "import", source + "/truncated.cmb"], on: replica, mentioning: "truncated or corrupted")

        var flipped = [UInt8](good)
        flipped[flipped.count / 2] ^= 0x40
        try Data(flipped).write(to: URL(fileURLWithPath: source + "/flipped.cmb"))
        try expectRefused(
            ["changes", "import", source + "/flipped.cmb"], on: replica, mentioning: "truncated or corrupted")

        try Data("hello, not a bundle".utf8).write(to: URL(fileURLWithPath: source + "/text.cmb"))
        try expectRefused(
            ["changes", "import", source + "/text.cmb"], on: replica, mentioning: "not a CaseMesh change bundle")

        try expectRefused(["changes", "import", source + "/missing.cmb"], on: replica, mentioning: "cannot read")
    }

    @Test func aBundleNamingNoValidSchemaVersionIsRefused() throws {
        // Another valid version is accepted (a newer schema's changes are held:
        // MixedVersionTests); version 0 or one past 32 bits is no schema at all.
        let replica = try makeReplica("schema")
        defer { try? FileManager.default.removeItem(atPath: replica.root) }
        for version in [0, 1 << 40] {
            let path = replica.root + "/v\(version).cmb"
            try writeBundle(
                [change(for: replica, ops: [.assign(FieldKey(entity: "case", field: "stage"), .string("intake"))])],
                for: replica, schemaVersion: version, to: path)
            try expectRefused(
                ["changes", "import", path], on: replica, mentioning: "names case schema version \(version)")
        }
    }

    @Test func changesOutsideTheSchemaOrFromTheFutureAreRefused() throws {
        let replica = try makeReplica("semantic")
        defer { try? FileManager.default.removeItem(atPath: replica.root) }
        // (A field the schema lacks is a newer schema's: held, see MixedVersionTests.)
        let outOfVocabulary = try change(
            for: replica, ops: [.assign(FieldKey(entity: "case", field: "riskLevel"), .string("catastrophic"))])
        try writeBundle([outOfVocabulary], for: replica, to: replica.root + "/unknown.cmb")
        try expectRefused(
            ["changes", "import", replica.root + "/unknown.cmb"], on: replica, mentioning: "catastrophic")

        let wrongKind = try change(
            for: replica, ops: [.assign(FieldKey(entity: "household", field: "size"), .string("four"))])
        try writeBundle([wrongKind], for: replica, to: replica.root + "/kind.cmb")
        try expectRefused(["changes", "import", replica.root + "/kind.cmb"], on: replica, mentioning: "household.size")

        let threeDaysAhead = SystemWallClock().nowMillis() + 3 * 86_400_000
        let future = try change(
            for: replica, ops: [.assign(FieldKey(entity: "case", field: "riskLevel"), .string("low"))],
            hlc: threeDaysAhead)
        try writeBundle([future], for: replica, to: replica.root + "/future.cmb")
        try expectRefused(
            ["changes", "import", replica.root + "/future.cmb"], on: replica, mentioning: "ahead of the local clock")
    }

    @Test func badWritesFromTheCommandLineAreRefused() throws {
        let replica = try makeReplica("cli")
        defer { try? FileManager.default.removeItem(atPath: replica.root) }
        try expectRefused(
            ["case", "set", replica.caseID, "favouriteColour", "red"], on: replica, mentioning: "unknown field")
        try expectRefused(
            ["case", "set", replica.caseID, "riskLevel", "catastrophic"], on: replica, mentioning: "riskLevel")
        try expectRefused(
            ["case", "set", replica.caseID, "household.size", "four"], on: replica, mentioning: "whole number")
        try expectRefused(["case", "add", replica.caseID, "riskLevel", "high"], on: replica, mentioning: "register")
        try expectRefused(
            ["case", "set", replica.caseID, "person.name", "Kim"], on: replica, mentioning: "needs an instance")
        try expectRefused(["case", "set", "case-nope", "stage", "intake"], on: replica, mentioning: "invalid case ID")
        try expectRefused(["resolve", replica.caseID, "riskLevel", "low"], on: replica, mentioning: "no open conflict")
        let uninitialised = try Binary.run(["case", "list", "--data", replica.root + "/nothing-here"])
        #expect(uninitialised.status != 0)
        #expect(uninitialised.stderr.contains("casemesh init"))
        let badReplica = try Binary.run(["init", "--replica", "No Slash", "--data", replica.root + "/other"])
        #expect(badReplica.status != 0)
        #expect(badReplica.stderr.contains("invalid replica ID"))
    }
}
