/// The address of one field inside a case: entity type, instance and field name.
///
/// Text form: `entity.field` for the single instance of an entity
/// (`report.channel`), `entity#instance.field` for one of many
/// (`person#p1.name`), and a bare `field` for the case entity itself (`stage`
/// is `case.stage`).
public struct FieldKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var entity: String
    public var instance: String
    public var field: String

    public init(entity: String, instance: String = "", field: String) {
        self.entity = entity
        self.instance = instance
        self.field = field
    }

    /// Parses the text form.
    ///
    /// - Throws: ``CRDTError`` with code `invalidFieldKey`.
    public init(parsing text: String) throws(CRDTError) {
        func fail() -> CRDTError {
            CRDTError(
                code: .invalidFieldKey,
                message: "invalid field '\(text.prefix(80))': expected field, entity.field or entity#instance.field"
            )
        }
        let dotParts = text.split(separator: ".", omittingEmptySubsequences: false)
        let entityPart: Substring
        let fieldPart: Substring
        switch dotParts.count {
        case 1:
            entityPart = "case"
            fieldPart = dotParts[0]
        case 2:
            entityPart = dotParts[0]
            fieldPart = dotParts[1]
        default:
            throw fail()
        }
        let hashParts = entityPart.split(separator: "#", omittingEmptySubsequences: false)
        guard hashParts.count <= 2 else { throw fail() }
        let instance = hashParts.count == 2 ? hashParts[1] : ""
        guard Self.isName(hashParts[0]), Self.isName(fieldPart),
            instance.isEmpty && hashParts.count == 1
                || Self.isInstance(instance)
        else { throw fail() }
        entity = String(hashParts[0])
        self.instance = String(instance)
        field = String(fieldPart)
    }

    public var description: String {
        if instance.isEmpty {
            return entity == "case" ? field : "\(entity).\(field)"
        }
        return "\(entity)#\(instance).\(field)"
    }

    /// The canonical text form used as a storage key: always `entity[#instance].field`.
    public var storageKey: String {
        instance.isEmpty ? "\(entity).\(field)" : "\(entity)#\(instance).\(field)"
    }

    public static func < (lhs: FieldKey, rhs: FieldKey) -> Bool {
        (lhs.entity, lhs.instance, lhs.field) < (rhs.entity, rhs.instance, rhs.field)
    }

    static func isName(_ text: Substring) -> Bool {
        guard let first = text.utf8.first, text.utf8.count <= 64, first >= UInt8(ascii: "a"), first <= UInt8(ascii: "z")
        else { return false }
        return text.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
        }
    }

    static func isInstance(_ text: Substring) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 64 else { return false }
        return text.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
    }
}
