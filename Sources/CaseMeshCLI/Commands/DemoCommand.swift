import ArgumentParser
import CaseMeshCRDT
import CaseMeshModel
import CaseMeshNet
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
            try await Demo(root: root, json: json).play()
        } else {
            try await NetworkDemo(root: root, json: json, web: offline || noWeb ? nil : webPort).play()
        }
    }
}

private struct Demo {
    let root: String
    let json: Bool

    func say(_ line: String) { emit(line) }

    /// A node's credentials from the demo's own CA, trusted and used to seal its changes.
    func credentials(_ store: CaseStore, from authority: EphemeralAuthority) throws -> NodeCredentials {
        let issued = try authority.issue(store.replicaID)
        let credentials = try CLIError.wrap { () throws(NetError) in
            try NodeCredentials(
                certificate: issued.certificate, key: issued.key, authority: authority.certificatePath,
                revocationList: authority.revocationListPath)
        }
        try CLIError.wrap {
            try store.trustSigner(
                credentials.replicaID, publicKey: credentials.publicKeyRaw, certificate: credentials.certificateDER)
        }
        return credentials
    }

    /// A bundle as `changes export` writes it (sealed, what the recipient may
    /// receive) and as `changes import --ca` reads it (every signer verified).
    func exchange(
        from source: CaseStore, sealedBy credentials: NodeCredentials, to target: CaseStore,
        verifier: PeerVerifier, name: String
    ) async throws {
        _ = try CLIError.wrap { try source.sealOwnChanges(sign: { message in try credentials.sign(message) }) }
        let (bundle, page) = try CLIError.wrap {
            try BundleExchange.bundle(from: source, for: target.replicaID.institution)
        }
        let path = root + "/\(name).cmb"
        try Data(bundle.encoded()).write(to: URL(fileURLWithPath: path))
        try CLIError.wrap { try source.recordDelivered(page.ownChangesSent) }
        let read = try CLIError.wrap {
            try ChangeBundle(decoding: [UInt8](Data(contentsOf: URL(fileURLWithPath: path))))
        }
        let verdict = try await CLIError.wrap { () async throws(StoreError) in
            try await BundleExchange.checkSigners(read, store: target, verifier: verifier)
        }
        let report = try CLIError.wrap { () throws(StoreError) in
            try BundleExchange.apply(
                BundleExchange.decode(read), of: read, to: target, distrusted: verdict.distrusted)
        }
        guard report.rejected.isEmpty, verdict.refused.isEmpty else {
            throw CLIError(
                message: "\(name): refused \(report.rejected.first?.reason ?? verdict.refused.first ?? "")")
        }
        say(
            "  \(name): \(read.changes.count) sealed changes carried to \(target.replicaID): "
                + "\(report.applied) applied, \(report.duplicates) already held")
    }

    func play() async throws {
        let dong = try CLIError.wrap {
            try CaseStore.create(directory: root + "/dong", replicaID: ReplicaID("dongducheon.jungang-dong/server"))
        }
        let senior = try CLIError.wrap {
            try CaseStore.create(
                directory: root + "/senior", replicaID: ReplicaID("dongducheon.senior-welfare/laptop-2"))
        }
        say("Two replicas: \(dong.replicaID) and \(senior.replicaID) (data in \(root))")
        // The consortium's CA, made for the demo: each node seals its changes with its
        // key, and each import verifies every signer against the CA and its CRL.
        let authority = try EphemeralAuthority(directory: root + "/ca")
        let dongKeys = try credentials(dong, from: authority)
        let seniorKeys = try credentials(senior, from: authority)
        let verifier = try CLIError.wrap { () throws(NetError) in
            try PeerVerifier(authorityFile: authority.certificatePath, revocationList: authority.revocationListPath)
        }
        func exchange(from source: CaseStore, to target: CaseStore, name: String) async throws {
            try await self.exchange(
                from: source, sealedBy: source.replicaID == dong.replicaID ? dongKeys : seniorKeys, to: target,
                verifier: verifier, name: name)
        }

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
        try await exchange(from: dong, to: senior, name: "dong-to-senior-1")

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
            try await exchange(from: dong, to: senior, name: "dong-to-senior-\(round + 1)")
            try await exchange(from: senior, to: dong, name: "senior-to-dong-\(round)")
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
        try await exchange(from: dong, to: senior, name: "dong-to-senior-resolution")
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
