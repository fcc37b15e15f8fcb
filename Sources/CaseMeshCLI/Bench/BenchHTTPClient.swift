import NIOCore
import NIOHTTP1
import NIOPosix

/// Keep-alive HTTP/1.1 connections to a loopback API, for `bench api`'s clients.
///
/// Written on SwiftNIO's HTTP/1 codec rather than with URLSession, whose Linux
/// implementation traps under concurrent load (`URLSession.behaviour(for:)`, seen
/// here), and rather than async-http-client, which would add its HTTP/2 stack to
/// every build for a benchmark's client. One request at a time; no TLS, no redirects.
enum BenchHTTP {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// One connection's request/response exchange.
    struct Exchange: ~Copyable {
        let host: String
        let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
        var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator

        /// Sends one request and reads its whole response: the status and the body.
        mutating func request(
            _ method: HTTPMethod, _ path: String, headers extra: [(String, String)] = [], body: [UInt8]? = nil
        ) async throws -> (status: Int, body: [UInt8]) {
            var headers = HTTPHeaders([("Host", host), ("Connection", "keep-alive")] + extra)
            if let body { headers.add(name: "Content-Length", value: String(body.count)) }
            try await outbound.write(
                .head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)))
            if let body { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
            try await outbound.write(.end(nil))
            var status = 0
            var received: [UInt8] = []
            while let part = try await inbound.next() {
                switch part {
                case .head(let head): status = Int(head.status.code)
                case .body(let buffer): received += buffer.readableBytesView
                case .end: return (status, received)
                }
            }
            throw Failure(description: "the connection closed before the response ended")
        }
    }

    /// Opens a connection, runs `body` with it, and closes it.
    static func withConnection<T: Sendable>(
        host: String, port: Int, _ body: (inout Exchange) async throws -> T
    ) async throws -> T {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var exchange = Exchange(host: host, outbound: outbound, inbound: inbound.makeAsyncIterator())
            return try await body(&exchange)
        }
    }
}
