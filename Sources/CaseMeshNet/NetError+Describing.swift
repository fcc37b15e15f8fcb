import Foundation
import NIOCore
import NIOPosix
import NIOSSL

extension NetError {
    /// One sentence for what went wrong on the network and what to do, instead of
    /// the library's own words (`bind(descriptor:ptr:bytes:): Address already in use
    /// (errno: 98)`, `SingleConnectionFailure(...)`), which no operator should have
    /// to decode.
    ///
    /// - Parameters:
    ///   - error: what SwiftNIO or NIOSSL threw.
    ///   - address: the `HOST:PORT` involved.
    ///   - listening: whether this node was starting its listener (else dialling).
    public static func describing(_ error: any Error, address: String, listening: Bool) -> NetError {
        if let known = error as? NetError { return known }
        if let io = error as? IOError {
            return NetError(code: .unreachable, message: explain(io.errnoCode, address, listening))
        }
        if let connection = error as? NIOConnectionError {
            if let first = connection.connectionErrors.first {
                return describing(first.error, address: address, listening: listening)
            }
            if connection.dnsAError != nil || connection.dnsAAAAError != nil {
                return NetError(
                    code: .unreachable, message: "the host of \(address) cannot be resolved: check the peer's address")
            }
        }
        if let channel = error as? ChannelError {
            switch channel {
            case .connectTimeout:
                return NetError(
                    code: .unreachable,
                    message: "\(address) did not answer in time: check the address and that no firewall drops the port")
            case .ioOnClosedChannel, .alreadyClosed, .eof, .outputClosed, .inputClosed:
                return NetError(
                    code: .unreachable,
                    message: "\(address) closed the connection (it may have refused this node, or stopped)")
            default:
                break
            }
        }
        if error is NIOSSLError || error is BoringSSLError {
            return NetError(
                code: .untrustedPeer,
                message: "the TLS handshake with \(address) failed (\(error)): check that both nodes' certificates "
                    + "come from the same consortium CA and are neither expired nor revoked")
        }
        return NetError(code: .unreachable, message: "\(address): \(error)")
    }

    private static func explain(_ code: CInt, _ address: String, _ listening: Bool) -> String {
        switch code {
        case EADDRINUSE:
            return "\(address) is already in use by another program (another casemesh serve?): stop it, or give "
                + "--listen another port"
        case EADDRNOTAVAIL:
            return "\(address) is not an address of this machine: give --listen one of its addresses (or 0.0.0.0)"
        case EACCES:
            return "no permission to listen on \(address): ports below 1024 need privileges; use a higher port"
        case ECONNREFUSED:
            return "nothing listens at \(address) (connection refused): is the peer's casemesh serve running there?"
        case ETIMEDOUT:
            return "\(address) did not answer in time: check the address and that no firewall drops the port"
        case EHOSTUNREACH, ENETUNREACH:
            return "no route to \(address): check the network and the peer's address"
        case ECONNRESET:
            return "\(address) reset the connection: it may have refused this node's certificate"
        default:
            let reason = String(cString: strerror(code))
            return listening ? "cannot listen on \(address): \(reason)" : "cannot reach \(address): \(reason)"
        }
    }
}
