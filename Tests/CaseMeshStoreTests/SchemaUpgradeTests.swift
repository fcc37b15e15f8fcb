import CaseMeshCRDT
import CaseMeshModel
import CaseMeshTestSupport
import Foundation
import Testing

@_spi(Testing) @testable import CaseMeshStore

/// Institutions upgrade on different days: a node on an older case schema holds
/// what a newer one writes, relays it, and merges it when it upgrades.
@Suite struct SchemaUpgradeTests {
    static let visitPlan = FieldKey(entity: "case", field: "visitPlan")
    static let risk = FieldKey(entity: "case", field: "riskLevel")
    static let title = FieldKey(entity: "case", field: "title")
    static let audit = AccessRecord(action: .write, actor: "test", purpose: "case-management", via: "test")

    /// A case written on a schema-3 node, shared with the dong office (every data
    /// category) and the senior centre (general data only).
    static func newerNodeCase(in directory: String) throws -> (store: CaseStore, caseID: CaseID) {
        let newer = try CaseStore.create(
            directory: directory, replicaID: try ReplicaID("mental.centre/server"), schema: NewerSchema.schema())
        var generator = SeededGenerator(seed: 3)
        let opened = try newer.openCase(
            ops: [.assign(risk, .string("high")), .assign(visitPlan, .string("weekly"))], using: &generator)
        let dong = try InstitutionID("dong.office")
        let senior = try InstitutionID("senior.centre")
        try newer.share(
            opened.caseID, grant: ConsentGrant(instance: "c1", recipients: [dong], categories: DataCategory.allCases),
            allowingNew: [dong], recording: audit)
        try newer.share(
            opened.caseID, grant: ConsentGrant(instance: "c2", recipients: [senior]), allowingNew: [senior],
            recording: audit)
        // Later changes build on the first: the field is overwritten, a known field beside it.
        try newer.write(
            caseID: opened.caseID, ops: [.assign(visitPlan, .string("monthly")), .assign(title, .string("독거 어르신"))])
        try newer.write(caseID: opened.caseID, ops: [.assign(risk, .string("crisis"))])
        return (newer, opened.caseID)
    }

    /// The schema-3 node with its case, and a dong office on the built-in schema.
    static func twoNodes(in root: String) throws -> (newer: CaseStore, older: CaseStore, caseID: CaseID) {
        let (newer, caseID) = try newerNodeCase(in: root + "/mental")
        let older = try CaseStore.create(
            directory: root + "/dong", replicaID: try ReplicaID("dong.office/server"), schema: .bundled)
        return (newer, older, caseID)
    }

    static func page(_ store: CaseStore, for institution: String) throws -> [Change] {
        try store.logPage(from: 1, for: try InstitutionID(institution), maxChanges: 10_000, maxBytes: 1 << 30).changes
    }

    @Test func anOlderNodeHoldsRelaysAndAfterItsUpgradeMergesWhatANewerSchemaWrote() throws {
        let root = NSTemporaryDirectory() + "casemesh-schema-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (newer, older, caseID) = try Self.twoNodes(in: root)
        let sent = try Self.page(newer, for: "dong.office")
        let report = try older.apply(sent)
        #expect(report.rejected.isEmpty, "\(report.rejected)")
        #expect(report.applied == sent.count)
        #expect(report.heldForNewerSchema == 2, "both changes that write the new field")
        let before = try older.snapshot(of: caseID)
        let written = try newer.snapshot(of: caseID)
        #expect(before.fields[Self.risk] == written.fields[Self.risk], "the rest of every change merged")
        #expect(before.fields[Self.title] == written.fields[Self.title])
        #expect(before.fields[Self.visitPlan] == nil, "the new field waits")
        #expect(before.version == written.version, "every change counts as held")
        #expect(try older.heldForNewerSchema() == .init(changes: 2, fields: ["case.visitPlan"]))
        #expect(try older.figures().heldForNewerSchema == 2)

        // Relayed whole to an institution covered for every category, not to one
        // covered only for general data: this node cannot know the new field's category.
        let relayed = try Self.page(older, for: "dong.office")
        #expect(relayed.contains { change in change.ops.contains { $0.field == Self.visitPlan && !$0.isWithheld } })
        let senior = try Self.page(older, for: "senior.centre")
        let seniorOps = senior.flatMap(\.ops).filter { $0.field == Self.visitPlan }
        #expect(!seniorOps.isEmpty && seniorOps.allSatisfy(\.isWithheld), "withheld as digests")

        // The upgrade: the same directory opened with the newer schema.
        let upgraded = try CaseStore.open(directory: root + "/dong", schema: NewerSchema.schema())
        let after = try upgraded.snapshot(of: caseID)
        let reference = try newer.snapshot(of: caseID)
        #expect(after.fields == reference.fields, "the same case as on the node that wrote it")
        #expect(after.version == reference.version)
        #expect(try upgraded.heldForNewerSchema().changes == 0)
        // The case list sees the merged state, and a reopen is a no-op.
        let reopened = try CaseStore.open(directory: root + "/dong", schema: NewerSchema.schema())
        #expect(try reopened.snapshot(of: caseID).fields == reference.fields)
        // Going back is refused: this build's schema is older than the store's.
        #expect {
            try CaseStore.open(directory: root + "/dong", schema: .bundled)
        } throws: { error in
            (error as? StoreError)?.message.contains("newer than schema \(CaseSchema.bundled.version)") == true
        }
    }

    @Test func heldOperationsInTheUncheckpointedTailMergeOnceAtTheUpgrade() throws {
        let root = NSTemporaryDirectory() + "casemesh-schema-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (newer, older, caseID) = try Self.twoNodes(in: root)
        // The first change checkpointed, the rest committed to the log but never
        // checkpointed (as if the node was killed): held operations on both sides
        // of the checkpoint at the upgrade.
        let sent = try Self.page(newer, for: "dong.office")
        _ = try older.apply([sent[0]])
        _ = try older.withApplySession(wallMillis: SystemWallClock().nowMillis(), checkpoint: false) { session in
            var report = ApplyReport()
            for change in sent.dropFirst() { try session.receive(change, body: change.encoded(), report: &report) }
            return report
        }
        #expect(try older.read { db in try !LogTail(db).isEmpty })
        #expect(try older.heldForNewerSchema().changes == 2)
        let upgraded = try CaseStore.open(directory: root + "/dong", schema: NewerSchema.schema())
        #expect(try upgraded.snapshot(of: caseID).fields == (try newer.snapshot(of: caseID)).fields)
        #expect(try upgraded.openConflicts().isEmpty, "no sibling left by an out-of-order merge")
    }

    @Test func aNewerSchemaMayOnlyAdd() throws {
        let bundled = CaseSchema.bundled
        try NewerSchema.schema().checkUpgrade(from: bundled)
        let renamed = String(decoding: NewerSchema.json(), as: UTF8.self).replacingOccurrences(
            of: "\"riskLevel\"", with: "\"risk\"")
        #expect(throws: ModelError.self) { try CaseSchema(json: Array(renamed.utf8)).checkUpgrade(from: bundled) }
        let retyped = String(decoding: NewerSchema.json(), as: UTF8.self).replacingOccurrences(
            of: "\"crisis\"]", with: "\"crisis\",\"extreme\"]")
        #expect(throws: ModelError.self, "an enum that gains a value would be refused by older nodes") {
            try CaseSchema(json: Array(retyped.utf8)).checkUpgrade(from: bundled)
        }
        #expect(throws: ModelError.self) { try bundled.checkUpgrade(from: NewerSchema.schema()) }
    }

    @Test func installingASchemaChecksItAndTheNextOpenUpgrades() throws {
        let root = NSTemporaryDirectory() + "casemesh-schema-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        _ = try CaseStore.create(directory: root, replicaID: try ReplicaID("dong.office/server"))
        #expect(throws: StoreError.self) { try CaseStore.installSchema(Array("{".utf8), directory: root) }
        #expect(throws: StoreError.self, "the same version is no upgrade") {
            try CaseStore.installSchema(NewerSchema.json(version: CaseSchema.bundled.version), directory: root)
        }
        let versions = try CaseStore.installSchema(NewerSchema.json(), directory: root)
        #expect(versions == (CaseSchema.bundled.version, CaseSchema.bundled.version + 1))
        #expect(try CaseStore.open(directory: root).schema.version == CaseSchema.bundled.version + 1)
    }
}
