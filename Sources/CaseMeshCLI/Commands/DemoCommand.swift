import ArgumentParser
import CaseMeshCRDT
import CaseMeshModel
import CaseMeshOperations
import CaseMeshStore
import Foundation

/// `casemesh demo`: four institutions' nodes on loopback mutual TLS play a joint
/// case; `--offline` plays the same kind of story with change bundles instead.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Play a joint case between four institutions' nodes over mutual TLS on loopback.",
        discussion: """
            Creates a temporary consortium CA and four nodes (a dong administrative welfare centre, a senior \
            welfare centre, a mental health welfare centre, a community welfare centre). A KakaoTalk report \
            opens a case shared by three of them; they edit it offline at the same time; they sync; every \
            participant shows the same merged case with the open conflict, and the community centre, not a \
            participant, holds nothing of it. Then the four nodes keep running, each with its web app on \
            127.0.0.1 and a login printed for it, syncing every few seconds, until Ctrl-C (--no-web ends at once). \
            With --offline, two replicas sync by bundle files instead.
            """)

    @Option(help: "Keep the nodes' data in this directory instead of a temporary one.") var dir: String?
    @Flag(help: "Sync by change bundles between two replicas (no network).") var offline = false
    @Flag(help: "Print the final merged case as JSON.") var json = false
    @Flag(
        name: .customLong("no-web"),
        help: "End after the story instead of leaving the nodes running with their web apps.")
    var noWeb = false
    @Option(help: "The first of the four web apps' ports on 127.0.0.1 (default 8080; 0 picks free ports).")
    var webPort = 8080

    func validate() throws {
        guard (0...65_532).contains(webPort) else { throw ValidationError("--web-port must be from 0 to 65532") }
    }

    func run() async throws {
        let root = dir ?? NSTemporaryDirectory() + "casemesh-demo-\(UUID().uuidString)"
        defer { if dir == nil { try? FileManager.default.removeItem(atPath: root) } }
        if offline {
            try CLIError.wrap { try Demo(root: root, json: json).play() }
        } else {
            try await NetworkDemo(root: root, json: json, web: offline || noWeb ? nil : webPort).play()
        }
    }
}

private struct Demo {
    let root: String
    let json: Bool

    func say(_ line: String) { emit(line) }

    func exchange(from source: CaseStore, to target: CaseStore, name: String) throws {
        let bundle = ChangeBundle(
            schemaVersion: source.schema.version, source: source.replicaID, recipient: target.replicaID.institution,
            createdAtMillis: SystemWallClock().nowMillis(),
            changes: try source.encodedChanges(for: target.replicaID.institution))
        let path = root + "/\(name).cmb"
        try Data(bundle.encoded()).write(to: URL(fileURLWithPath: path))
        let read = try ChangeBundle(
            decoding: [UInt8](Data(contentsOf: URL(fileURLWithPath: path))))
        let report = try target.apply(read.changes.map { (try Change(decoding: $0), $0) })
        say(
            "  \(name): \(read.changes.count) changes carried to \(target.replicaID): "
                + "\(report.applied) applied, \(report.duplicates) already held")
    }

    func play() throws {
        let dong = try CaseStore.create(
            directory: root + "/dong", replicaID: ReplicaID("dongducheon.jungang-dong/server"))
        let senior = try CaseStore.create(
            directory: root + "/senior", replicaID: ReplicaID("dongducheon.senior-welfare/laptop-2"))
        say("Two replicas: \(dong.replicaID) and \(senior.replicaID) (data in \(root))")

        say("\n1. A neighbour reports through the KakaoTalk channel; the dong centre opens a case.")
        var generator = SystemRandomNumberGenerator()
        func key(_ text: String) throws -> FieldKey { try FieldKey(parsing: text) }
        let opened = try dong.openCase(
            ops: [
                .assign(key("title"), .string("Elderly man living alone, no power use for 3 days")),
                .assign(key("stage"), .string("intake")),
                .assign(key("riskLevel"), .string("high")),
                .assign(key("report.channel"), .string("kakao")),
                .insert(key("report.crisisSignals"), "no-power-use"),
                .assign(key("household.type"), .string("single-elderly")),
            ], using: &generator)
        let caseID = opened.caseID
        try dong.write(
            caseID: caseID,
            ops: ConsentGrant(
                recipients: [try InstitutionID("dongducheon.senior-welfare")], validUntil: "2027-11-23T00:00:00+09:00"
            ).ops())
        say("  opened \(caseID); with his consent (until 2027-11-23), the senior welfare centre joins as a participant")
        try exchange(from: dong, to: senior, name: "dong-to-senior-1")

        say("\n2. Both work offline. The dong centre raises the risk; the senior centre's home visit lowers it.")
        try dong.write(
            caseID: caseID,
            ops: [
                .assign(key("riskLevel"), .string("crisis")),
                .append(key("notes"), "Emergency welfare (긴급복지) application started."),
                .assign(key("stage"), .string("assessment")),
            ])
        try senior.write(
            caseID: caseID,
            ops: [
                .assign(key("riskLevel"), .string("medium")),
                .append(key("notes"), "Home visit: he was in hospital for 3 days, now back; meals are the need."),
                .insert(key("report.crisisSignals"), "food-insecurity"),
                .insert(key("tags"), "meal-delivery"),
            ])

        say("\n3. Back in touch: bundles go both ways, twice (duplicates are harmless).")
        for round in 1...2 {
            try exchange(from: dong, to: senior, name: "dong-to-senior-\(round + 1)")
            try exchange(from: senior, to: dong, name: "senior-to-dong-\(round)")
        }
        let dongView = try dong.snapshot(of: caseID)
        let seniorView = try senior.snapshot(of: caseID)
        say("\n4. The merged case, as the dong centre sees it:")
        say(CaseRendering.text(dongView, schema: dong.schema))
        let same =
            CaseRendering.json(dongView, schema: dong.schema) == CaseRendering.json(seniorView, schema: senior.schema)
        say("  the senior centre's replica is \(same ? "identical" : "DIFFERENT")")
        for conflict in try senior.openConflicts() {
            let values = conflict.siblings.map { "'\($0.value)' by \($0.dot.origin)" }.joined(separator: " vs ")
            say("  open conflict on \(conflict.field): \(values)")
        }

        say("\n5. The case manager at the dong centre resolves the conflict; the resolution is a change too.")
        try dong.write(caseID: caseID, ops: [.assign(key("riskLevel"), .string("high"))])
        try exchange(from: dong, to: senior, name: "dong-to-senior-resolution")
        let finalSenior = try senior.snapshot(of: caseID)
        let finalDong = try dong.snapshot(of: caseID)
        say(
            "  open conflicts now: dong \(try dong.openConflicts().count), senior \(try senior.openConflicts().count); "
                + "riskLevel on both: \(Self.register(finalDong, "riskLevel")) / \(Self.register(finalSenior, "riskLevel"))"
        )
        if json { say(CaseRendering.json(finalSenior, schema: senior.schema).text) }
        guard finalDong == finalSenior else { throw CLIError(message: "the replicas did not converge") }
        say("\nBoth replicas hold the same case.")
    }

    static func register(_ snapshot: CaseSnapshot, _ name: String) -> String {
        guard case .register(let state)? = snapshot.fields[FieldKey(entity: "case", field: name)] else { return "-" }
        return state.value?.description ?? "-"
    }
}
