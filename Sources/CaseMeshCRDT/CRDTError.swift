/// An error raised by the CRDT layer: bad identifiers, clocks, or encoded bytes.
///
/// Every failure caused by input from outside (a peer, a file, a user) surfaces as
/// this error with a ``Code`` and a one-line message; nothing in this module traps on
/// such input.
public struct CRDTError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A replica, institution or case identifier is malformed.
        public static let invalidIdentifier = Code("invalidIdentifier")
        /// A field path does not parse.
        public static let invalidFieldKey = Code("invalidFieldKey")
        /// A received timestamp is too far ahead of the local wall clock.
        public static let clockTooFarAhead = Code("clockTooFarAhead")
        /// Encoded bytes are truncated or malformed.
        public static let malformedEncoding = Code("malformedEncoding")
        /// A change is internally inconsistent (sequence, context, ops).
        public static let invalidChange = Code("invalidChange")
    }

    public var code: Code
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
