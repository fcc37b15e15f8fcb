import ArgumentParser
import CaseMeshCRDT
import CaseMeshHTTP
import CaseMeshNode
import CaseMeshOperations
import CaseMeshStore
import CaseMeshSync
import Foundation
import Metrics
import NIOPosix
import Prometheus
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run this institution's node: accept peers over mutual TLS and sync with them periodically.",
        discussion: """
            Standard output carries one JSON line, {"event":"listening","port":N,"replica":...}, once the \
            listener is up (for scripts and service managers); the log goes to standard error. Stops gracefully \
            on SIGTERM or SIGINT. One serve per data directory; local edits (casemesh case ...) work on the same \
            directory while it runs.
            """)

    @OptionGroup var node: NodeOptions
    @Option(help: "Where to listen, HOST:PORT ([::1]:PORT for IPv6; port 0 picks a free port).") var listen: String?
    @Option(help: "Seconds between sync rounds with each --peer (default 30, ± 20% jitter).") var interval: Double?
    @Option(
        help:
            "Also serve the HTTP API and the case workers' web app on HOST:PORT; plain HTTP only on a loopback address."
    )
    var http: String?
    @Option(help: "The institution's web certificate (PEM) for --http on a non-loopback address.")
    var httpCert: String?
    @Option(help: "Its private key (PEM).") var httpKey: String?
    @Option(help: "HTTP requests handled at once; past it the API answers 503 (default 64).")
    var httpMaxRequests: Int?
    @Option(help: "The consortium secret file for resident registration numbers (the API's persons/identify and find).")
    var residentNumberSecret: String?
    @Option(
        help: ArgumentHelp(
            "On a city-level node: a JSON file of dongs to the dong offices that cover them; each intake report is "
                + "shared with the household's dong office under the statutory basis for discovery."))
    var intakeRouting: String?

    @Option(
        help: ArgumentHelp(
            "Also serve /health, /health/live, /health/ready and /metrics (no login) on HOST:PORT, for a monitoring "
                + "network; they are on a loopback --http listener too."))
    var admin: String?

    func run() async throws {
        let configuration = try node.configuration(listen: listen, interval: interval)
        // A flag wins over the configuration file's key of the same name.
        let settings = configuration.serveSettings
        let http = self.http ?? settings["http"]
        let httpCert = self.httpCert ?? settings["http-cert"]
        let httpKey = self.httpKey ?? settings["http-key"]
        let residentNumberSecret = self.residentNumberSecret ?? settings["resident-number-secret"]
        let intakeRouting = self.intakeRouting ?? settings["intake-routing"]
        let admin = self.admin ?? settings["admin"]
        var httpMaxRequests = self.httpMaxRequests
        if httpMaxRequests == nil, let text = settings["http-max-requests"] {
            guard let number = Int(text) else { throw ValidationError("http-max-requests must be a number") }
            httpMaxRequests = number
        }
        let adminAddress = try admin.map { text throws(CLIError) in
            do { return try NodeConfiguration.parseAddress(text) } catch {
                throw CLIError(message: "--admin: \(error)")
            }
        }
        // One registry per process: swift-metrics can be bootstrapped once, and
        // serve is the only command that keeps running to be scraped.
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.nameAndLabelSanitizer = { label, dimensions in
            func clean(_ text: String) -> String {
                String(text.map { $0.isLetter && $0.isASCII || $0.isNumber && $0.isASCII || $0 == "_" ? $0 : "_" })
            }
            return (clean(label), dimensions.map { (clean($0.0), $0.1) })
        }
        MetricsSystem.bootstrap(factory)
        let logger = try node.logger("casemesh.serve", settings: settings)
        let store = try CLIError.wrap { try CaseStore.open(directory: configuration.dataDirectory) }
        let lock: DataDirectoryLock
        do {
            lock = try DataDirectoryLock(directory: configuration.dataDirectory)
        } catch {
            throw CLIError(message: error.message)
        }
        let replica = store.replicaID
        let service: Node
        do {
            service = try Node(
                configuration: configuration, store: store, group: MultiThreadedEventLoopGroup.singleton, logger: logger
            ) { port in
                emit(
                    JSONValue.object([
                        "event": .string("listening"), "port": .number(Int64(port)),
                        "replica": .string(replica.rawValue),
                    ]).text)
            }
        } catch {
            throw CLIError(message: "\(error)")
        }
        let options = node
        let (listen, interval) = (self.listen, self.interval)
        var services: [any Service] = [
            service,
            ReloadOnHangup(node: service, directory: configuration.dataDirectory) {
                try options.configuration(listen: listen, interval: interval)
            },
        ]
        service.warnOfExpiry()
        if let http {
            var api: APIConfiguration
            do {
                api = try APIConfiguration(address: http, certificatePath: httpCert, keyPath: httpKey)
            } catch {
                throw CLIError(message: error.message)
            }
            if let httpMaxRequests {
                guard (1...10_000).contains(httpMaxRequests) else {
                    throw ValidationError("--http-max-requests must be from 1 to 10000")
                }
                api.maximumConcurrentRequests = httpMaxRequests
            }
            if let residentNumberSecret {
                api.residentNumberHasher = try CLIError.wrap {
                    try ResidentNumberHasher(secretFile: residentNumberSecret)
                }
            }
            api.metricsRegistry = registry
            if let intakeRouting {
                do { api.intakeRouting = try IntakeRouting(file: intakeRouting) } catch {
                    throw CLIError(message: error.message)
                }
            }
            let scheme = api.certificatePath == nil ? "http" : "https"
            let host = api.host.contains(":") ? "[\(api.host)]" : api.host
            let application = try APIServer.application(
                store: store, node: service, configuration: api, logger: logger
            ) { [scheme, host] port in
                emit(
                    JSONValue.object([
                        "event": .string("http-listening"), "port": .number(Int64(port)),
                        "url": .string("\(scheme)://\(host):\(port)/"),
                    ]).text)
            }
            services.append(application)
        }
        if let (host, port) = adminAddress {
            services.append(
                AdminServer.application(
                    store: store, node: service, host: host, port: port, registry: registry, logger: logger
                ) { port in
                    emit(JSONValue.object(["event": .string("admin-listening"), "port": .number(Int64(port))]).text)
                })
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        withExtendedLifetime(lock) {}
    }
}

struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync", abstract: "Run one sync round with the configured peers and report what moved.")

    @OptionGroup var node: NodeOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let configuration = try node.configuration()
        let logger = try node.logger("casemesh.sync")
        let store = try CLIError.wrap { try CaseStore.open(directory: configuration.dataDirectory) }
        let service: Node
        do {
            service = try Node(
                configuration: configuration, store: store, group: MultiThreadedEventLoopGroup.singleton, logger: logger
            )
        } catch {
            throw CLIError(message: "\(error)")
        }
        let peers = service.peersToSync()
        guard !peers.isEmpty else {
            throw CLIError(
                message: "no peers: give --peer REPLICA-ID=HOST:PORT, or --directory with the consortium directory "
                    + "(the nodes of the institutions this node shares cases with)")
        }
        var failures: [String] = []
        var results: [JSONValue] = []
        for peer in peers {
            let started = ContinuousClock.now
            let before = service.transport.traffic.totals
            // On a terminal, a live line of what has arrived (on standard error, so the
            // report on standard output stays clean).
            let showProgress = !output.json && isatty(STDERR_FILENO) == 1
            let outcome = await service.sync(with: peer) { summary in
                guard showProgress else { return }
                let seconds = max((ContinuousClock.now - started).seconds, 0.001)
                let rate = Int(Double(summary.changesReceived) / seconds)
                FileHandle.standardError.write(
                    Data("\r  \(peer.replica): \(summary.changesReceived) changes received, \(rate)/s   ".utf8))
            }
            if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
            let after = service.transport.traffic.totals
            let seconds = (ContinuousClock.now - started).seconds
            let summary = outcome.summary
            if let error = outcome.error { failures.append("\(peer.replica): \(error)") }
            results.append(
                .object([
                    "peer": .string(peer.replica.rawValue),
                    "ok": .bool(outcome.error == nil),
                    "error": outcome.error.map { .string($0.description) } ?? .null,
                    "received": .number(Int64(summary.changesReceived)),
                    "applied": .number(Int64(summary.changesApplied)),
                    "sent": .number(Int64(summary.changesSent)),
                    "bytes_received": .number(Int64(after.received - before.received)),
                    "bytes_sent": .number(Int64(after.sent - before.sent)),
                    "refused": .number(Int64(outcome.refused.count)),
                    "seconds": .double(seconds),
                ]))
            if !output.json {
                let status = outcome.error.map { "failed: \($0)" } ?? "ok"
                emit(
                    "\(peer.replica): \(status); received \(summary.changesReceived) (\(summary.changesApplied) new), sent \(summary.changesSent)"
                )
            }
        }
        // What the round brought may end this institution's entitlement to cases; a case
        // is purged once this node's own edits of it have reached an entitled peer.
        await service.enforceNeedToKnow()
        let purged = await service.purgedCases
        if output.json {
            emit(JSONValue.array(results).text)
        } else {
            for item in purged { emit("purged \(item.caseID): \(item.reason)") }
        }
        if !failures.isEmpty {
            throw CLIError(
                message: "sync failed with \(failures.count) of \(peers.count) peers: \(failures[0])")
        }
    }
}

struct PeersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peers", abstract: "Show each peer's last successful sync, lag and last error; forget one.",
        subcommands: [List.self, Forget.self], defaultSubcommand: List.self)

    /// `casemesh peers forget REPLICA-ID`: drops what this node knows of a peer that
    /// left (its pull cursor and sync record). The next sync with it, if any, pulls
    /// its whole log again; what was applied stays.
    struct Forget: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget a peer: its pull cursor and last-sync record (a node that left the consortium).")

        @OptionGroup var store: StoreOptions
        @Argument(help: "The peer's replica ID.") var replica: String

        func run() throws {
            let store = try store.openStore()
            let peer = try CLIError.wrap { try ReplicaID(replica) }
            guard try CLIError.wrap({ try store.forgetPeer(peer) }) else {
                throw CLIError(message: "this node has no record of peer \(peer)")
            }
            emit("forgot \(peer)")
        }
    }
}

extension PeersCommand {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each peer's last successful sync, lag and last error.")

        @OptionGroup var store: StoreOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let store = try store.openStore()
            let states = try CLIError.wrap { try store.peerStates() }
            let directory = try? store.memberDirectory()
            let now = SystemWallClock().nowMillis()
            func time(_ millis: UInt64?) -> JSONValue {
                guard let millis else { return .null }
                return .string(CaseRendering.time(.init(physical: millis)))
            }
            if output.json {
                emit(
                    JSONValue.array(
                        states.map { state in
                            .object([
                                "peer": .string(state.peer.rawValue),
                                "institution": directory?.member(state.peer.institution).map { .string($0.name) }
                                    ?? .null,
                                "last_success": time(state.lastSuccessAtMillis),
                                "last_attempt": time(state.lastAttemptAtMillis),
                                "lag_seconds": state.lastSuccessAtMillis.map {
                                    .double(Double(now.saturatingSubtract($0)) / 1000)
                                } ?? .null,
                                "last_error": state.lastError.map(JSONValue.string) ?? .null,
                                "changes_pulled": .number(Int64(state.changesPulled)),
                                "pull_cursor": .number(Int64(state.pullCursor)),
                            ])
                        }
                    ).text)
            } else if states.isEmpty {
                emit("no peers synced yet")
            } else {
                for state in states {
                    let lag = state.lastSuccessAtMillis.map { "\(now.saturatingSubtract($0) / 1000) s ago" } ?? "never"
                    let name = directory?.member(state.peer.institution).map { "  \($0.name)" } ?? ""
                    emit(
                        "\(state.peer)\(name)  last success \(lag)  pulled \(state.changesPulled)\(state.lastError.map { "  last error: \($0)" } ?? "")"
                    )
                }
            }
        }
    }
}

extension UInt64 {
    func saturatingSubtract(_ other: UInt64) -> UInt64 { self > other ? self - other : 0 }
}
