import CaseMeshCRDT
public import CaseMeshSync
public import NIOCore

/// Splits the byte stream into sync messages: a 4-byte big-endian length, then the
/// message. A length over the maximum is refused before any of the frame is
/// buffered, so a peer cannot make the node hold an arbitrarily large frame.
public struct SyncFrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = SyncMessage

    public let maximumFrameBytes: Int

    public init(maximumFrameBytes: Int = SyncMessage.maximumFrameBytes) {
        self.maximumFrameBytes = maximumFrameBytes
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> SyncMessage? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length > 0, Int(length) <= maximumFrameBytes else {
            throw NetError(code: .badFrame, message: "frame of \(length) bytes (at most \(maximumFrameBytes) allowed)")
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        guard let bytes = buffer.readBytes(length: Int(length)) else { return nil }
        do {
            return try SyncMessage(decoding: bytes)
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

    public init() {}

    public func encode(data: SyncMessage, out: inout ByteBuffer) throws {
        let bytes = data.encoded()
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
