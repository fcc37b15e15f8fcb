/// An error raised by the case model: a schema that does not load, or a write outside
/// the schema (unknown field, wrong merge kind, bad value).
public struct ModelError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The schema definition itself is malformed.
        public static let invalidSchema = Code("invalidSchema")
        /// The field is not in the schema.
        public static let unknownField = Code("unknownField")
        /// The operation does not fit the field's merge kind.
        public static let wrongKind = Code("wrongKind")
        /// The value does not fit the field's type.
        public static let invalidValue = Code("invalidValue")
    }

    public var code: Code
    public var message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
