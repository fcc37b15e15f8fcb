public import CaseMeshCRDT
public import CaseMeshSync
import Foundation
public import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// One authenticated connection to a peer, carrying sync messages.
public struct PeerConnection: Sendable {
    public let channel: NIOAsyncChannel<SyncMessage, SyncMessage>
    /// Resolves to the peer's replica ID once its certificate is verified; fails when
    /// the handshake fails or the connection closes first.
    public let peer: EventLoopFuture<ReplicaID>
    public let remoteAddress: String
}

/// Mutual-TLS listener and dialer for sync connections (SwiftNIO + NIOSSL).
///
/// TLS 1.3 only; both sides present certificates and verify the other's with
/// ``PeerVerifier``. Each connection's pipeline: idle timeout (which also bounds the
/// handshake), TLS, frame decoder with a maximum frame size, frame encoder.
public struct SyncTransport: Sendable {
    /// This node's credentials now (a reload replaces them for new connections).
    public var credentials: NodeCredentials { state.current.credentials }
    /// How peers are verified now.
    public var verifier: PeerVerifier { state.current.verifier }
    public let group: any EventLoopGroup
    public var idleTimeout: TimeAmount = .seconds(30)
    /// The longest a peer may take from connecting to being verified, in total: the
    /// idle timer restarts on every byte, so a peer trickling one byte at a time would
    /// otherwise hold a connection slot forever without ever presenting a certificate.
    public var handshakeTimeout: TimeAmount = .seconds(10)
    public var maximumFrameBytes = SyncMessage.maximumFrameBytes
    /// Counts every connection's protocol bytes.
    public let traffic = TrafficCounter()
    private let state: TLSState

    /// The credentials, verifier and TLS contexts new connections use, replaced as a
    /// whole by ``reload(credentials:verifier:)``; a connection keeps the ones it was
    /// set up with until it ends.
    private final class TLSState: Sendable {
        struct Current: Sendable {
            var credentials: NodeCredentials
            var verifier: PeerVerifier
            var server: NIOSSLContext
            var client: NIOSSLContext
        }
        private let value: Mutex<Current>
        init(_ current: Current) { value = Mutex(current) }
        var current: Current { value.withLock { $0 } }
        func replace(_ current: Current) { value.withLock { $0 = current } }
    }

    public init(credentials: NodeCredentials, verifier: PeerVerifier, group: any EventLoopGroup) throws {
        self.group = group
        state = TLSState(try Self.contexts(credentials, verifier))
    }

    /// New connections use these from now on; connections in flight finish with the
    /// ones they started with. Throws (and changes nothing) when NIOSSL refuses them.
    public func reload(credentials: NodeCredentials, verifier: PeerVerifier) throws {
        state.replace(try Self.contexts(credentials, verifier))
    }

    private static func contexts(_ credentials: NodeCredentials, _ verifier: PeerVerifier) throws -> TLSState.Current {
        var server = TLSConfiguration.makeServerConfiguration(
            certificateChain: credentials.certificateChain.map { .certificate($0) },
            privateKey: .privateKey(credentials.privateKey))
        server.minimumTLSVersion = .tlsv13
        server.certificateVerification = .noHostnameVerification
        server.trustRoots = .certificates([credentials.authorityNIO])
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv13
        client.certificateVerification = .noHostnameVerification
        client.trustRoots = .certificates([credentials.authorityNIO])
        client.certificateChain = credentials.certificateChain.map { .certificate($0) }
        client.privateKey = .privateKey(credentials.privateKey)
        return TLSState.Current(
            credentials: credentials, verifier: verifier, server: try NIOSSLContext(configuration: server),
            client: try NIOSSLContext(configuration: client))
    }

    /// Completes a promise once, whoever comes first: the verifier or the close.
    private final class Once: @unchecked Sendable {
        private let lock = NSLock()
        private var done = false
        private let promise: EventLoopPromise<ReplicaID>

        init(_ promise: EventLoopPromise<ReplicaID>) { self.promise = promise }

        func complete(_ result: Result<ReplicaID, any Error>) {
            lock.lock()
            let first = !done
            done = true
            lock.unlock()
            if first { promise.completeWith(result) }
        }
    }

    private func configure(_ channel: any Channel, server: Bool) throws -> PeerConnection {
        let promise = channel.eventLoop.makePromise(of: ReplicaID.self)
        let once = Once(promise)
        let tls = state.current
        let verifier = tls.verifier
        let callback: NIOSSLCustomVerificationCallback = { chain, verification in
            verification.completeWithTask {
                do {
                    once.complete(.success(try await verifier.verify(chain)))
                    return .certificateVerified
                } catch {
                    once.complete(.failure(error))
                    return .failed
                }
            }
        }
        let handshakeTimeout = handshakeTimeout
        let deadline = channel.eventLoop.scheduleTask(in: handshakeTimeout) {
            once.complete(
                .failure(
                    NetError(
                        code: .untrustedPeer,
                        message:
                            "the peer was not verified within \(handshakeTimeout.nanoseconds / 1_000_000_000) s of connecting"
                    )))
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in deadline.cancel() }
        channel.closeFuture.whenComplete { _ in
            once.complete(
                .failure(
                    NetError(
                        code: .untrustedPeer,
                        message: "the peer closed the connection during the TLS handshake, before its certificate "
                            + "was verified (it may have refused this node's certificate, or expected another replica)"
                    )))
        }
        let operations = channel.pipeline.syncOperations
        try operations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
        try operations.addHandler(IdleCloser())
        if server {
            try operations.addHandler(NIOSSLServerHandler(context: tls.server, customVerificationCallback: callback))
        } else {
            try operations.addHandler(
                try NIOSSLClientHandler(
                    context: tls.client, serverHostname: nil, customVerificationCallback: callback))
        }
        try operations.addHandler(
            ByteToMessageHandler(SyncFrameDecoder(maximumFrameBytes: maximumFrameBytes, traffic: traffic)))
        try operations.addHandler(MessageToByteHandler(SyncFrameEncoder(traffic: traffic)))
        let asyncChannel = try NIOAsyncChannel<SyncMessage, SyncMessage>(wrappingChannelSynchronously: channel)
        return PeerConnection(
            channel: asyncChannel, peer: promise.futureResult, remoteAddress: channel.remoteAddress?.description ?? "?")
    }

    /// Listens on `host:port`; each accepted connection arrives in the returned channel.
    ///
    /// - Throws: ``NetError`` with one sentence for the operator (address in use, not
    ///   an address of this machine, no permission).
    public func listen(host: String, port: Int) async throws -> NIOAsyncChannel<PeerConnection, Never> {
        do {
            return try await bind(host: host, port: port)
        } catch {
            throw NetError.describing(error, address: Self.address(host, port), listening: true)
        }
    }

    /// `HOST:PORT`, with brackets around an IPv6 host.
    static func address(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    private func bind(host: String, port: Int) async throws -> NIOAsyncChannel<PeerConnection, Never> {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try configure(channel, server: true) }
            }
    }

    /// Connects to a peer at `host:port`.
    ///
    /// - Throws: ``NetError`` with one sentence for the operator (nothing listens
    ///   there, no answer, no route).
    public func connect(host: String, port: Int, timeout: TimeAmount = .seconds(10)) async throws -> PeerConnection {
        do {
            return try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture { try configure(channel, server: false) }
                }
        } catch {
            throw NetError.describing(error, address: Self.address(host, port), listening: false)
        }
    }
}
