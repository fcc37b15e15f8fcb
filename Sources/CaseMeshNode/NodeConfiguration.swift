public import CaseMeshCRDT
import Foundation

/// How a node runs: its data, its TLS credentials, where it listens and which peers
/// it syncs with. The same keys work as command-line flags and in a `--config` file.
public struct NodeConfiguration: Sendable {
    /// A peer to dial: its replica ID (checked against its certificate) and address.
    public struct Peer: Hashable, Sendable {
        public var replica: ReplicaID
        public var host: String
        public var port: Int

        public init(replica: ReplicaID, host: String, port: Int) {
            self.replica = replica
            self.host = host
            self.port = port
        }

        /// Parses `REPLICA-ID=HOST:PORT`.
        public init(parsing text: String) throws(NodeError) {
            guard let equals = text.firstIndex(of: "=") else {
                throw NodeError("peer '\(text)': expected REPLICA-ID=HOST:PORT")
            }
            do {
                replica = try ReplicaID(String(text[..<equals]))
            } catch {
                throw NodeError("peer '\(text)': \(error.message)")
            }
            (host, port) = try NodeConfiguration.parseAddress(String(text[text.index(after: equals)...]))
        }
    }

    public var dataDirectory = "./casemesh-data"
    public var listenHost: String?
    public var listenPort: Int?
    public var certificate = ""
    public var key = ""
    public var authority = ""
    public var revocationList: String?
    /// The consortium directory published by the CA (`casemesh-ca directory`):
    /// checked against the CA, installed in the data directory, re-read like the CRL.
    public var directory: String?
    public var peers: [Peer] = []
    /// Seconds between sync rounds (jittered ±20%, backed off exponentially per failing peer).
    public var intervalSeconds: Double = 30
    public var maximumConnections = 64
    public var idleTimeoutSeconds = 30
    /// How long access-log entries are kept before they are destroyed (PIPA: at
    /// least two years for sensitive data).
    public var accessLogRetentionDays = 730

    public init() {}

    /// Parses `HOST:PORT` or `[IPv6]:PORT`.
    public static func parseAddress(_ text: String) throws(NodeError) -> (String, Int) {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw NodeError("address '\(text)': expected [IPv6]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw NodeError("address '\(text)': expected HOST:PORT") }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65_535).contains(port) else {
            throw NodeError("address '\(text)': expected HOST:PORT with a port from 0 to 65535")
        }
        return (String(host), port)
    }

    /// Reads `key = value` lines (`#` starts a comment; `peer` may repeat) into this
    /// configuration. Keys: data, listen, cert, key, ca, crl, peer, interval,
    /// max-connections, retention-days, idle-timeout, and serve's own (``serveKeys``).
    public mutating func load(file path: String) throws(NodeError) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw NodeError("cannot read the configuration file \(path)")
        }
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw NodeError("\(path):\(number + 1): expected key = value")
            }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            do {
                try set(key, value)
            } catch {
                throw NodeError("\(path):\(number + 1): \(error.message)")
            }
        }
    }

    /// The keys `serve` itself reads (its HTTP and admin listeners, the resident
    /// number secret, logging), kept as given for it: a flag wins over the file.
    public static let serveKeys: Set<String> = [
        "http", "http-cert", "http-key", "http-max-requests", "admin", "resident-number-secret", "log-format",
        "log-level", "intake-routing",
    ]

    /// Values of ``serveKeys`` from the configuration file.
    public var serveSettings: [String: String] = [:]

    /// Sets one key as the configuration file or a flag would.
    public mutating func set(_ key: String, _ value: String) throws(NodeError) {
        if Self.serveKeys.contains(key) {
            serveSettings[key] = value
            return
        }
        switch key {
        case "data": dataDirectory = value
        case "listen": (listenHost, listenPort) = try Self.parseAddress(value)
        case "cert": certificate = value
        case "key": self.key = value
        case "ca": authority = value
        case "crl": revocationList = value
        case "directory": directory = value
        case "peer": peers.append(try Peer(parsing: value))
        case "interval":
            guard let seconds = Double(value), seconds > 0 else {
                throw NodeError("interval must be a positive number of seconds")
            }
            intervalSeconds = seconds
        case "max-connections":
            guard let count = Int(value), count > 0 else { throw NodeError("max-connections must be positive") }
            maximumConnections = count
        case "retention-days":
            guard let days = Int(value), days > 0 else { throw NodeError("retention-days must be a positive number") }
            accessLogRetentionDays = days
        case "idle-timeout":
            guard let seconds = Int(value), seconds > 0 else { throw NodeError("idle-timeout must be positive") }
            idleTimeoutSeconds = seconds
        default:
            throw NodeError("unknown key '\(key)'")
        }
    }

    /// Checks that what a node needs is there.
    public func validate() throws(NodeError) {
        for (name, value) in [("cert", certificate), ("key", key), ("ca", authority)] where value.isEmpty {
            throw NodeError("--\(name) is required")
        }
    }
}

/// A configuration or runtime failure of the node, with a one-line message.
public struct NodeError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
