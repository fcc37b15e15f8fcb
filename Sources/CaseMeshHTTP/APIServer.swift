import CaseMeshNet
public import CaseMeshNode
public import CaseMeshOperations
public import CaseMeshStore
import Foundation
public import Hummingbird
import HummingbirdCore
import HummingbirdTLS
public import Logging
import NIOCore
import NIOSSL
public import Prometheus
import Synchronization

/// How the node's HTTP listener is set up (`casemesh serve --http`).
public struct APIConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The institution's own web certificate and key (PEM), required on any address
    /// but loopback: staff passwords and case data never cross a network in clear.
    public var certificatePath: String?
    public var keyPath: String?
    /// A session ends after this long without a request (default 30 minutes).
    public var sessionIdleMillis: UInt64 = 30 * 60_000
    /// The largest request body accepted (default 1 MiB).
    public var maximumBodyBytes = 1 << 20
    /// Requests handled at once; past it the API answers 503 at once, so a flood of
    /// calls cannot starve sync of the store (default 64).
    public var maximumConcurrentRequests = 64
    /// The consortium secret for resident registration numbers (`persons/identify`,
    /// `persons/find`); without it those answer 503.
    public var residentNumberHasher: ResidentNumberHasher?
    /// Where the process's metrics are collected (`serve` bootstraps swift-metrics
    /// with it); `/metrics` serves it. Without it `/metrics` answers 404.
    public var metricsRegistry: PrometheusCollectorRegistry?
    /// On a city-level node: the dong office each intake report goes to, by the
    /// household's dong (`serve --intake-routing FILE`).
    public var intakeRouting: IntakeRouting?

    public init(host: String, port: Int, certificatePath: String? = nil, keyPath: String? = nil) {
        self.host = host
        self.port = port
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }

    /// Parses `HOST:PORT` (`[::1]:PORT` for IPv6).
    public init(address: String, certificatePath: String?, keyPath: String?) throws(APIConfigurationError) {
        let host: String
        let portText: Substring
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            host = String(address[address.index(after: address.startIndex)..<close])
            portText = address[address.index(after: close)...].drop(while: { $0 == ":" })
        } else if let colon = address.lastIndex(of: ":") {
            host = String(address[..<colon])
            portText = address[address.index(after: colon)...]
        } else {
            throw APIConfigurationError(message: "--http wants HOST:PORT, got '\(address)'")
        }
        guard let port = Int(portText), (0...65_535).contains(port), !host.isEmpty else {
            throw APIConfigurationError(message: "--http wants HOST:PORT with a port from 0 to 65535, got '\(address)'")
        }
        self.init(host: host, port: port, certificatePath: certificatePath, keyPath: keyPath)
        guard (certificatePath == nil) == (keyPath == nil) else {
            throw APIConfigurationError(message: "give both --http-cert and --http-key, or neither")
        }
        if certificatePath == nil, !isLoopback {
            throw APIConfigurationError(
                message: "--http \(address) is not a loopback address: plain HTTP would send staff passwords and "
                    + "case data over the network in clear; give --http-cert and --http-key (the institution's "
                    + "web certificate), or listen on 127.0.0.1 or [::1]")
        }
    }

    /// Whether the listener only takes connections from this machine.
    public var isLoopback: Bool {
        host == "127.0.0.1" || host == "::1" || host == "localhost" || host.hasPrefix("127.")
    }
}

/// A refused `--http` setting, with what to give instead.
public struct APIConfigurationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// The node's HTTP API (`/api/v1`): staff logins, cases, conflicts, sharing, audit,
/// intake and the change feed, over the same store the sync listener serves.
public enum APIServer {
    /// Builds the HTTP application; run it as a service beside the node (one process,
    /// one store, one graceful shutdown).
    ///
    /// - Parameter onListening: called with the bound port once the listener is up.
    public static func application(
        store: CaseStore, node: Node?, configuration: APIConfiguration, logger: Logger,
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) throws -> some ApplicationProtocol {
        let slots = RequestSlots(limit: configuration.maximumConcurrentRequests)
        let api = API(store: store, node: node, configuration: configuration, logger: logger, slots: slots)
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: StoreExecutorMiddleware(executor: .shared))
        router.add(middleware: ProblemMiddleware(logger: logger))
        // The probes answer even when every request slot is taken.
        OperatorEndpoints(
            store: store, node: node, registry: configuration.metricsRegistry, detailed: configuration.isLoopback
        ).register(on: router)
        router.add(middleware: ConcurrencyLimitMiddleware(slots: slots))
        api.register(on: router)
        try WebApp(api: api).register(on: router)
        let server: HTTPServerBuilder
        if let certificatePath = configuration.certificatePath, let keyPath = configuration.keyPath {
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map {
                    NIOSSLCertificateSource.certificate($0)
                }
                let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
                let tls = TLSConfiguration.makeServerConfiguration(
                    certificateChain: chain, privateKey: .privateKey(key))
                server = try .tls(.http1(), tlsConfiguration: tls)
            } catch {
                throw APIConfigurationError(message: "cannot load the web certificate or key: \(error)")
            }
        } else {
            server = .http1()
        }
        return Application(
            router: router, server: server,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                CloseOnExec.markSockets()
                onListening(channel.localAddress?.port ?? configuration.port)
            },
            logger: logger)
    }
}

/// The operator's listener (`serve --admin HOST:PORT`): `/health`, its probes and
/// `/metrics` only, for a monitoring network. Plain HTTP: nothing on it is personal
/// data or a secret.
public enum AdminServer {
    public static func application(
        store: CaseStore, node: Node?, host: String, port: Int, registry: PrometheusCollectorRegistry?,
        logger: Logger, onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: StoreExecutorMiddleware(executor: .shared))
        router.add(middleware: ProblemMiddleware(logger: logger))
        OperatorEndpoints(store: store, node: node, registry: registry, detailed: true).register(on: router)
        return Application(
            router: router, server: .http1(),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                CloseOnExec.markSockets()
                onListening(channel.localAddress?.port ?? port)
            }, logger: logger)
    }
}

/// Turns every error into `application/problem+json`; an unexpected one is logged
/// (without request data) and answered 500 with no detail of the cause.
struct ProblemMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let logger: Logger

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            return Problem.response(status: problem.status, detail: problem.detail, headers: problem.headers)
        } catch let error as StoreError {
            let problem = Problem.from(error)
            if problem.status == .internalServerError {
                logger.error("store failure answering an API request", metadata: ["error": "\(error.message)"])
            }
            return Problem.response(status: problem.status, detail: problem.detail)
        } catch let error as HTTPError {
            let detail: String
            switch error.status {
            case .notFound: detail = "no such resource: see /api/v1/openapi.json"
            case .contentTooLarge: detail = "the request body is too large"
            case .methodNotAllowed: detail = "this resource does not take \(request.method)"
            default: detail = error.body ?? error.status.reasonPhrase
            }
            return Problem.response(status: error.status, detail: detail, headers: error.headers)
        } catch is NIOTooManyBytesError {
            return Problem.response(
                status: .contentTooLarge, detail: "the request body is larger than this node accepts (1 MiB)")
        } catch {
            logger.error("unexpected failure answering an API request", metadata: ["error": "\(type(of: error))"])
            return Problem.response(
                status: .internalServerError, detail: "the node could not complete the request; its log has the cause")
        }
    }
}

/// The requests in flight, shared by the middleware and by event streams (which
/// hold their slot for as long as they stream, after their handler has returned).
final class RequestSlots: Sendable {
    let limit: Int
    private let inFlight = Atomic<Int>(0)

    init(limit: Int) { self.limit = max(1, limit) }

    /// Takes a slot; false (and nothing taken) when all are in use.
    func take() -> Bool {
        if inFlight.add(1, ordering: .relaxed).newValue <= limit { return true }
        inFlight.subtract(1, ordering: .relaxed)
        return false
    }

    /// Keeps the slot of a request the middleware admitted for as long as its body
    /// streams (the middleware gives its own back when the handler returns).
    func hold() { inFlight.add(1, ordering: .relaxed) }

    func release() { inFlight.subtract(1, ordering: .relaxed) }

    var busy: Problem {
        Problem(
            .serviceUnavailable, "the node is answering \(limit) requests already; try again shortly",
            headers: [.retryAfter: "1"])
    }
}

/// Answers 503 past the limit of requests in flight (as Corrosion does), so API
/// load cannot take every store connection from sync.
struct ConcurrencyLimitMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let slots: RequestSlots

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard slots.take() else { throw slots.busy }
        defer { slots.release() }
        return try await next(request, context)
    }
}
