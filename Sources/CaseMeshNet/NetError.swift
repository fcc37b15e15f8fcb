public import CaseMeshSync

/// An error raised by the transport: credentials that do not load, a peer that
/// fails authentication, a malformed or oversized frame.
public struct NetError: Error, Hashable, Sendable, CustomStringConvertible, CertificateRefusal {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A certificate, key, CA or CRL file is missing or malformed.
        public static let badCredentials = Code("badCredentials")
        /// The peer's certificate is not trusted, expired, revoked, or names no replica.
        public static let untrustedPeer = Code("untrustedPeer")
        /// A frame is malformed or larger than allowed.
        public static let badFrame = Code("badFrame")
        /// The peer is not who the configuration expects at that address.
        public static let unexpectedPeer = Code("unexpectedPeer")
        /// The address cannot be listened on or reached.
        public static let unreachable = Code("unreachable")
    }

    public var code: Code
    public var message: String
    /// For a refused certificate: whether it can never verify again (revoked,
    /// expired, another CA, another replica's name), see ``CertificateRefusal``.
    public var isLasting: Bool

    public init(code: Code, message: String, lasting: Bool = false) {
        self.code = code
        self.message = message
        self.isLasting = lasting
    }

    public var description: String { message }
}
