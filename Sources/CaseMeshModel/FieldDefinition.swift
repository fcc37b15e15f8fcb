public import CaseMeshCRDT

/// How a field merges concurrent writes.
public enum MergeKind: String, Codable, Sendable {
    case register
    case set
    case log
}

/// The type of a field's values (or a set's elements, or a log's entries).
public enum ValueType: String, Codable, Sendable {
    /// One line of text.
    case string
    /// Free text, several lines allowed.
    case text
    /// One of the listed values.
    case `enum`
    /// A whole number, optionally bounded.
    case integer
    /// `true` or `false`.
    case boolean
    /// An ISO 8601 date and time with an offset, such as `2026-11-23T09:30:00+09:00`.
    case datetime
    /// An ISO 8601 calendar date, such as `2026-12-01`.
    case date
    /// An institution ID, such as `dongducheon.jungang-dong`.
    case institution
}

/// What kind of personal data a field holds, which decides what consent it needs to
/// be shared (PIPA §23 for sensitive data, §24 for unique identifiers).
public enum DataCategory: String, Codable, Hashable, Sendable, CaseIterable {
    /// Ordinary personal data: shared under a consent or basis covering `general`.
    case general
    /// Health, mental health, disability and similar (PIPA §23).
    case sensitive
    /// Identifiers such as the keyed hash of a resident registration number (PIPA §24).
    case uniqueID = "unique-id"
}

/// One field of an entity in the case schema.
public struct FieldDefinition: Codable, Hashable, Sendable {
    public var name: String
    public var kind: MergeKind
    public var type: ValueType
    /// For sets: add-wins (default) or remove-wins.
    public var semantics: SetSemantics?
    /// For `enum` fields: the allowed values.
    public var values: [String]?
    /// For text types: the longest value, in characters.
    public var maxLength: Int?
    public var minimum: Int64?
    public var maximum: Int64?
    public var description: String?
    /// The data category; `general` when the schema names none.
    public var category: DataCategory?

    /// The longest text accepted when the schema names no limit.
    public static let defaultMaximumLength = 4000
}

/// One entity type of the case schema.
public struct EntityDefinition: Codable, Hashable, Sendable {
    public var name: String
    /// Whether a case holds many instances (`person#p1`) or one (`household`).
    public var multiple: Bool
    public var description: String?
    public var fields: [FieldDefinition]
}
