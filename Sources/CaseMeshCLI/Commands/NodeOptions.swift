import ArgumentParser
import CaseMeshNode
import Logging

/// The options `serve` and `sync` share; each may also come from `--config FILE`
/// (the same keys, `key = value` per line). Flags win over the file.
/// Plain values (the flags as parsed): read again by `serve` on SIGHUP.
struct NodeOptions: ParsableArguments, Sendable {
    @Option(help: "The replica's data directory (default ./casemesh-data).") var data: String?
    @Option(
        help:
            "A configuration file of key = value lines (data, listen, cert, key, ca, crl, directory, peer, interval, max-connections, idle-timeout, retention-days); flags win."
    )
    var config: String?
    @Option(help: "This node's certificate (PEM).") var cert: String?
    @Option(help: "This node's private key (PEM).") var key: String?
    @Option(help: "The consortium CA certificate (PEM).") var ca: String?
    @Option(help: "The consortium CA's revocation list (PEM).") var crl: String?
    @Option(
        help:
            "The consortium directory (casemesh-ca directory): member institutions, their names and nodes; the nodes of institutions this node shares cases with are its peers."
    )
    var directory: String?
    @Option(name: .customLong("peer"), help: "A peer to sync with, REPLICA-ID=HOST:PORT (repeatable).")
    var peers: [String] = []
    @Option(help: "Days access-log entries are kept before they are destroyed (default 730).")
    var retentionDays: Int?
    @Option(name: .customLong("log-level"), help: "trace, debug, info (default), notice, warning, error or critical.")
    var logLevel: String?
    @Option(name: .customLong("log-format"), help: "text (default) or json: one JSON object per line, for journald.")
    var logFormat: String?
    @Option(help: "Most connections at once (default 64).") var maxConnections: Int?

    /// - Parameter interval: `serve`'s seconds between rounds (`sync` runs one round).
    func configuration(listen: String? = nil, interval: Double? = nil) throws -> NodeConfiguration {
        var configuration = NodeConfiguration()
        do {
            if let config { try configuration.load(file: config) }
            if let data { configuration.dataDirectory = data }
            if let listen { try configuration.set("listen", listen) }
            if let cert { configuration.certificate = cert }
            if let key { configuration.key = key }
            if let ca { configuration.authority = ca }
            if let crl { configuration.revocationList = crl }
            if let directory { configuration.directory = directory }
            if !peers.isEmpty { configuration.peers = try peers.map { try NodeConfiguration.Peer(parsing: $0) } }
            if let interval { try configuration.set("interval", String(interval)) }
            if let maxConnections { try configuration.set("max-connections", String(maxConnections)) }
            if let retentionDays { try configuration.set("retention-days", String(retentionDays)) }
            try configuration.validate()
        } catch let error as NodeError {
            throw CLIError(message: error.message)
        }
        return configuration
    }

    /// - Parameter settings: `serve`'s keys from the configuration file (a flag wins).
    func logger(_ label: String, settings: [String: String] = [:]) throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel ?? settings["log-level"] ?? "info") else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        switch logFormat ?? settings["log-format"] ?? "text" {
        case "text": LoggingBootstrap.text
        case "json": LoggingBootstrap.json
        default: throw ValidationError("--log-format must be text or json")
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

/// Sends logs to standard error, once per process, as text lines or JSON lines.
enum LoggingBootstrap {
    static let text: Void = LoggingSystem.bootstrap(StreamLogHandler.standardError)
    static let json: Void = LoggingSystem.bootstrap { label in JSONLogHandler(label: label) }
}
