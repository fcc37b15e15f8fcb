import CaseMeshOperations
import CaseMeshStore
public import Hummingbird
import HummingbirdCore
public import NIOCore

/// The context of one API request: Hummingbird's core storage and the connection,
/// for the client's address (the access log records where an access came from).
public struct APIRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    public var remoteAddress: SocketAddress? { channel.remoteAddress }

    /// The client's address as the access log shows it ("127.0.0.1", "::1").
    var originAddress: String { remoteAddress?.ipAddress ?? "unknown" }
}

/// An error answered as `application/problem+json` (RFC 9457), with a one-line
/// `detail` a person can act on.
struct Problem: HTTPResponseError {
    var status: HTTPResponse.Status
    var detail: String
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ detail: String, headers: HTTPFields = [:]) {
        self.status = status
        self.detail = detail
        self.headers = headers
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        Self.response(status: status, detail: detail, headers: headers)
    }

    static func response(status: HTTPResponse.Status, detail: String, headers: HTTPFields = [:]) -> Response {
        let body = JSONValue.object([
            "type": .string("about:blank"), "title": .string(status.reasonPhrase),
            "status": .number(Int64(status.code)), "detail": .string(String(detail.prefix(500))),
        ]).text
        var fields = headers
        fields[.contentType] = "application/problem+json"
        fields[.cacheControl] = "no-store"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// The answer to a store's refusal.
    static func from(_ error: StoreError) -> Problem {
        switch error.code {
        case .caseNotFound: Problem(.notFound, error.message)
        case .withdrawn: Problem(.forbidden, error.message)
        case .invalidWrite: Problem(.unprocessableContent, error.message)
        case .schemaMismatch: Problem(.conflict, error.message)
        case .unauthenticated: Problem(.unauthorized, error.message)
        case .locked: Problem(.init(code: 423, reasonPhrase: "Locked"), error.message)
        case .restoreHold: Problem(.serviceUnavailable, error.message, headers: [.retryAfter: "30"])
        default:
            error.isDiskFull
                ? Problem(.serviceUnavailable, "the node's disk is full: " + error.message)
                : Problem(.internalServerError, "the node could not complete the request; its log has the cause")
        }
    }
}
