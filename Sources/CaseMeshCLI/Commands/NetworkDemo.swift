import CaseMeshCRDT
import CaseMeshHTTP
import CaseMeshModel
import CaseMeshNode
import CaseMeshOperations
import CaseMeshStore
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The README's main job: four institutions, one joint case, real mutual TLS.
struct NetworkDemo {
    let root: String
    let json: Bool
    /// The first web app port; nil: end after the story.
    let web: Int?

    func say(_ line: String = "") { emit(line) }

    func play() async throws {
        let dong = try ReplicaID("dongducheon.jungang-dong/server")
        let senior = try ReplicaID("dongducheon.senior-welfare/server")
        let mental = try ReplicaID("dongducheon.mental-health/server")
        let community = try ReplicaID("dongducheon.community-welfare/server")
        let roles = [
            dong: "dong administrative welfare centre", senior: "senior welfare centre",
            mental: "mental health welfare centre", community: "community welfare centre",
        ]
        var logger = Logger(label: "casemesh.demo")
        logger.logLevel = .error
        let consortium = try await LocalConsortium(
            root: root, replicas: [dong, senior, mental, community], logger: logger)
        defer { Task { await consortium.shutdown() } }
        say("CaseMesh demo: four institutions' nodes on loopback, mutual TLS with a temporary consortium CA")
        for replica in [dong, senior, mental, community] {
            say(
                "  \(replica.rawValue.padding(toLength: 40, withPad: " ", startingAt: 0)) \(roles[replica]!), port \(consortium.members[replica]!.address.port)"
            )
        }
        func store(_ replica: ReplicaID) -> CaseStore { consortium.members[replica]!.store }
        func key(_ text: String) throws -> FieldKey { try FieldKey(parsing: text) }
        var moved = 0
        var bytes = 0
        var sessions = 0
        let started = ContinuousClock.now
        func sync(_ a: ReplicaID, _ b: ReplicaID) async throws {
            let traffic = consortium.members[a]!.node.transport.traffic
            let before = traffic.totals
            let outcome = await consortium.sync(a, with: b)
            let after = traffic.totals
            if let error = outcome.error { throw CLIError(message: "sync \(a) with \(b) failed: \(error)") }
            sessions += 1
            moved += outcome.summary.changesReceived + outcome.summary.changesSent
            bytes += after.sent - before.sent + after.received - before.received
        }

        say()
        say("1. A neighbour reports through the KakaoTalk channel: an elderly man living alone, no power use for")
        say("   three days. The dong centre opens a case and, with his consent (general and health data, for case")
        say(
            "   management and service linkage, until 2027-11-23), brings in the mental health and senior welfare centres."
        )
        var generator = SystemRandomNumberGenerator()
        let opened = try CLIError.wrap {
            try store(dong).openCase(
                ops: [
                    .assign(try key("title"), .string("Elderly man living alone, no power use for 3 days")),
                    .assign(try key("stage"), .string("intake")),
                    .assign(try key("riskLevel"), .string("high")),
                    .assign(try key("report.channel"), .string("kakao")),
                    .insert(try key("report.crisisSignals"), "no-power-use"),
                    .insert(try key("report.crisisSignals"), "isolation"),
                    .assign(try key("household.type"), .string("single-elderly")),
                ]
                    + ConsentGrant(
                        recipients: [
                            try InstitutionID("dongducheon.mental-health"),
                            try InstitutionID("dongducheon.senior-welfare"),
                        ], categories: [.general, .sensitive], purposes: ["case-management", "service-linkage"],
                        validUntil: "2027-11-23T00:00:00+09:00"
                    ).ops(), using: &generator)
        }
        let caseID = opened.caseID
        say("   case \(caseID)")

        say()
        say("2. The dong centre syncs with every centre.")
        for other in [senior, mental, community] { try await sync(dong, other) }

        say()
        say("3. Home visits, offline, at the same time:")
        try CLIError.wrap {
            try store(dong).write(
                caseID: caseID,
                ops: [
                    .assign(try key("riskLevel"), .string("crisis")),
                    .append(try key("notes"), "Emergency welfare (긴급복지) application started."),
                ])
            try store(mental).write(
                caseID: caseID,
                ops: [
                    .assign(try key("riskLevel"), .string("medium")),
                    .insert(try key("report.crisisSignals"), "mental-health"),
                    .append(try key("notes"), "Counselling visit: low mood, agrees to weekly calls."),
                ])
            try store(senior).write(
                caseID: caseID,
                ops: [
                    .insert(try key("report.crisisSignals"), "food-insecurity"),
                    .insert(try key("tags"), "meal-delivery"),
                    .assign(try key("stage"), .string("assessment")),
                    .append(try key("notes"), "Home visit: back from 3 days in hospital; meals are the need."),
                ])
        }
        say("   dong centre: risk → crisis, note; mental health centre: risk → medium, crisis signal, note;")
        say("   senior centre: crisis signal, tag, stage → assessment, note")

        say()
        say("4. Back online: two sync rounds through the dong centre.")
        for _ in 0..<2 {
            for other in [senior, mental, community] { try await sync(other, dong) }
        }
        let elapsed = ContinuousClock.now - started

        say()
        say("5. The merged case, as every participant sees it:")
        let views = try CLIError.wrap { try [dong, senior, mental].map { try store($0).snapshot(of: caseID) } }
        let schema = store(dong).schema
        say(CaseRendering.text(views[0], schema: schema))
        let jsonViews = views.map { CaseRendering.json($0, schema: schema).text }
        let identical = jsonViews.allSatisfy { $0 == jsonViews[0] }
        say("   identical on the dong, senior and mental health centres' nodes: \(identical ? "yes" : "NO")")
        for conflict in try CLIError.wrap({ try store(senior).openConflicts() }) {
            let values = conflict.siblings.map { "'\($0.value)' by \($0.dot.origin)" }.joined(separator: " vs ")
            say("   open conflict on \(conflict.field): \(values) — a case worker resolves it with casemesh resolve")
        }

        say()
        say(
            "6. Sync figures: \(sessions) sessions, \(moved) changes moved, \(bytes) bytes on the wire, "
                + "\((elapsed.seconds * 1000).rounded()) ms in all (certificates checked on every connection, every change sealed by its origin and verified)"
        )

        say()
        let communityCases = try CLIError.wrap { try store(community).caseSummaries().count }
        let communityChanges = try CLIError.wrap { try store(community).encodedChanges().count }
        say(
            "7. Need to know: the community welfare centre synced too but is not a participant; its node holds "
                + "\(communityCases) cases and \(communityChanges) changes.")
        if json { say(jsonViews[0]) }
        guard identical, communityCases == 0, communityChanges == 0 else {
            throw CLIError(message: "the demo's expectations did not hold")
        }
        say()
        say("Every participant shows the same case.")
        if let web {
            try await serveWeb(consortium, order: [dong, senior, mental, community], roles: roles, basePort: web)
        }
    }

    /// Leaves the four nodes running, each with its web app and one account, syncing
    /// through the dong centre every few seconds, until Ctrl-C.
    func serveWeb(_ consortium: LocalConsortium, order: [ReplicaID], roles: [ReplicaID: String], basePort: Int)
        async throws
    {
        var logger = Logger(label: "casemesh.demo.web")
        logger.logLevel = .error
        let people = ["김민지", "박정호", "최은영", "정다은"]
        var services: [any Service] = []
        let ports = Mutex<[ReplicaID: Int]>([:])
        var logins: [(ReplicaID, String)] = []
        for (index, replica) in order.enumerated() {
            guard let member = consortium.members[replica] else { continue }
            var generator = SystemRandomNumberGenerator()
            let password = String(
                (0..<12).map { _ in Array("abcdefghjkmnpqrstuvwxyz23456789").randomElement(using: &generator)! })
            try CLIError.wrap {
                try member.store.addStaff(
                    username: "demo", displayName: people[index], role: .admin, password: password)
            }
            logins.append((replica, password))
            let configuration = APIConfiguration(host: "127.0.0.1", port: basePort == 0 ? 0 : basePort + index)
            services.append(
                try APIServer.application(
                    store: member.store, node: member.node, configuration: configuration, logger: logger
                ) {
                    port in ports.withLock { $0[replica] = port }
                })
        }
        services.append(DemoSyncLoop(consortium: consortium, hub: order[0], others: Array(order.dropFirst())))
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        let running = Task { try await group.run() }
        for _ in 0..<500 where ports.withLock({ $0.count }) < logins.count {
            try await Task.sleep(for: .milliseconds(10))
        }
        say()
        say("The four nodes keep running with their web apps (Korean; English on a switch), syncing every 5 s.")
        say("Open one in a browser and log in as demo with its password; Ctrl-C stops them all.")
        for (replica, password) in logins {
            let port = ports.withLock { $0[replica] } ?? 0
            say(
                "  http://127.0.0.1:\(port)/   \(roles[replica] ?? "")".padding(
                    toLength: 62, withPad: " ", startingAt: 0)
                    + "  login demo / \(password)")
        }
        try await running.value
    }
}

/// The demo's sync schedule once it serves its web apps: every 5 s each centre syncs
/// with the dong centre, so an edit on one web app shows on the others.
struct DemoSyncLoop: Service {
    let consortium: LocalConsortium
    let hub: ReplicaID
    let others: [ReplicaID]

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                for other in others { _ = await consortium.sync(other, with: hub) }
                try? await Task.sleep(for: .seconds(5))
            }
        }
    }
}
