import CaseMeshCRDT
public import CaseMeshSync
import Foundation
public import NIOCore

/// Splits the byte stream into sync messages: a 4-byte big-endian length, then the
/// message. A length over the maximum is refused before any of the frame is
/// buffered, so a peer cannot make the node hold an arbitrarily large frame.
public struct SyncFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = SyncMessage

    public let maximumFrameBytes: Int
    let traffic: TrafficCounter?
    private var changes = CompactChangeDecoder()

    public init(maximumFrameBytes: Int = SyncMessage.maximumFrameBytes, traffic: TrafficCounter? = nil) {
        self.maximumFrameBytes = maximumFrameBytes
        self.traffic = traffic
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> SyncMessage? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length > 0, Int(length) <= maximumFrameBytes else {
            throw NetError(code: .badFrame, message: "frame of \(length) bytes (at most \(maximumFrameBytes) allowed)")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        guard let bytes = buffer.readBytes(length: Int(length)) else { return nil }
        traffic?.add(received: 4 + Int(length))
        do {
            return try SyncMessage(decoding: bytes, changes: &changes)
        } catch {
            throw NetError(code: .badFrame, message: "malformed message: \(error.message)")
        }
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> SyncMessage? {
        try decode(buffer: &buffer)
    }
}

/// Frames outgoing sync messages (see ``SyncFrameDecoder``).
public struct SyncFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = SyncMessage

    let traffic: TrafficCounter?
    /// The connection's string table; used only on its event loop.
    private final class State: @unchecked Sendable {
        var changes = CompactChangeEncoder()
    }
    private let state = State()

    public init(traffic: TrafficCounter? = nil) {
        self.traffic = traffic
    }

    public func encode(data: SyncMessage, out: inout ByteBuffer) throws {
        let bytes = data.encoded(changes: &state.changes)
        traffic?.add(sent: 4 + bytes.count)
        out.writeInteger(UInt32(bytes.count))
        out.writeBytes(bytes)
    }
}

/// Closes a connection that has been silent for the idle timeout (a stalled
/// handshake included).
final class IdleCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// Counts the sync protocol's bytes (frames, before TLS) a transport sends and
/// receives, for `casemesh sync` figures and the benchmarks.
public final class TrafficCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var sentBytes = 0
    private var receivedBytes = 0

    public init() {}

    func add(sent: Int = 0, received: Int = 0) {
        lock.lock()
        sentBytes += sent
        receivedBytes += received
        lock.unlock()
    }

    /// Bytes sent and received so far.
    public var totals: (sent: Int, received: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (sentBytes, receivedBytes)
    }
}
