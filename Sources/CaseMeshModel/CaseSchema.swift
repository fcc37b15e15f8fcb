public import CaseMeshCRDT
import Foundation

/// The welfare case schema: entity types, their fields and each field's merge kind,
/// loaded from `schema/case-schema.json` and validated at start.
///
/// Every local write and every received change is checked against it: an unknown
/// field, an operation of the wrong kind or a value of the wrong type is refused.
public struct CaseSchema: Sendable, MergeRules {
    /// Bumped at every release of the schema. A newer version may only add entities
    /// and fields (``checkUpgrade(from:)``): nodes on different versions sync, and a
    /// node holds what it does not know yet until it upgrades (see `Upgrading.md`).
    public let version: Int
    public let entities: [String: EntityDefinition]
    private let fieldIndex: [String: [String: FieldDefinition]]

    private init(version: Int, entities: [String: EntityDefinition], fieldIndex: [String: [String: FieldDefinition]]) {
        self.version = version
        self.entities = entities
        self.fieldIndex = fieldIndex
    }

    private struct Document: Codable {
        var schemaVersion: Int
        var description: String?
        var entities: [EntityDefinition]
    }

    /// The schema shipped with this build (`schema/case-schema.json`, embedded at build time).
    public static let bundled: CaseSchema = {
        do {
            return try CaseSchema(json: PackageResources.case_schema_json)
        } catch {
            // The bundled schema is checked by the test suite; failing here is a build defect.
            preconditionFailure("the bundled case schema does not load: \(error)")
        }
    }()

    /// Loads and validates a schema definition.
    ///
    /// - Throws: ``ModelError`` with code `invalidSchema`, naming the first problem.
    public init(json: [UInt8]) throws(ModelError) {
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: Data(json))
        } catch {
            throw ModelError(code: .invalidSchema, message: "schema does not parse: \(error)")
        }
        func fail(_ reason: String) -> ModelError {
            ModelError(code: .invalidSchema, message: "invalid schema: \(reason)")
        }
        guard document.schemaVersion >= 1 else { throw fail("schemaVersion must be at least 1") }
        var entities: [String: EntityDefinition] = [:]
        var index: [String: [String: FieldDefinition]] = [:]
        for entity in document.entities {
            guard (try? FieldKey(parsing: "\(entity.name).x")) != nil else {
                throw fail("bad entity name '\(entity.name)'")
            }
            guard entities[entity.name] == nil else { throw fail("entity '\(entity.name)' defined twice") }
            var fields: [String: FieldDefinition] = [:]
            for field in entity.fields {
                let where_ = "\(entity.name).\(field.name)"
                guard (try? FieldKey(parsing: where_)) != nil else { throw fail("bad field name '\(where_)'") }
                guard fields[field.name] == nil else { throw fail("field '\(where_)' defined twice") }
                if field.type == .enum && (field.values ?? []).isEmpty {
                    throw fail("enum field '\(where_)' lists no values")
                }
                if field.type != .enum && field.values != nil {
                    throw fail("only enum fields list values ('\(where_)')")
                }
                if field.kind != .set && field.semantics != nil { throw fail("only sets name semantics ('\(where_)')") }
                if field.kind == .set && ![.string, .enum, .institution].contains(field.type) {
                    throw fail("set '\(where_)' must hold strings, enums or institutions")
                }
                if field.kind == .log && field.type != .text { throw fail("log '\(where_)' must hold text") }
                fields[field.name] = field
            }
            entities[entity.name] = entity
            index[entity.name] = fields
        }
        guard entities["case"]?.multiple == false else { throw fail("a single 'case' entity is required") }
        guard let participants = index["case"]?["participants"], participants.kind == .set,
            participants.type == .institution
        else { throw fail("case.participants must be a set of institutions") }
        version = document.schemaVersion
        self.entities = entities
        fieldIndex = index
    }

    /// The definition of a field.
    ///
    /// - Throws: ``ModelError`` with code `unknownField` when the entity or field is not in
    ///   the schema, or the instance form does not fit the entity.
    public func definition(of key: FieldKey) throws(ModelError) -> FieldDefinition {
        guard let entity = entities[key.entity] else {
            throw ModelError(code: .unknownField, message: "unknown entity '\(key.entity)' in field \(key)")
        }
        guard let field = fieldIndex[key.entity]?[key.field] else {
            throw ModelError(
                code: .unknownField, message: "unknown field '\(key)': \(key.entity) has no field '\(key.field)'")
        }
        if entity.multiple && key.instance.isEmpty {
            throw ModelError(
                code: .unknownField, message: "field '\(key)' needs an instance: \(key.entity)#ID.\(key.field)")
        }
        if !entity.multiple && !key.instance.isEmpty {
            throw ModelError(code: .unknownField, message: "field '\(key)': \(key.entity) has a single instance")
        }
        return field
    }

    /// Whether the schema has this field (its entity and name; the instance form is
    /// checked by ``definition(of:)``). A received operation on a field this schema
    /// does not have comes from a newer schema: the store holds it until an upgrade.
    public func knows(_ key: FieldKey) -> Bool {
        fieldIndex[key.entity]?[key.field] != nil
    }

    /// This schema as a node that did not have these fields saw it (the store's
    /// upgrade settles what an older node materialized before it adds the rest).
    public func forgetting(_ keys: some Sequence<FieldKey>) -> CaseSchema {
        var index = fieldIndex
        var entities = entities
        for key in keys {
            index[key.entity]?[key.field] = nil
            entities[key.entity]?.fields.removeAll { $0.name == key.field }
        }
        return CaseSchema(version: version, entities: entities, fieldIndex: index)
    }

    /// Checks that this schema may replace `older` on a node that holds data: same
    /// or later version, and every entity and field of the older one kept as it was
    /// (merge kind, type, set semantics, category, multiplicity; enumerations keep
    /// their values). Older nodes hold what a newer schema adds; a change to what
    /// they already have would be refused by them, so it is refused here.
    ///
    /// - Throws: ``ModelError`` `invalidSchema` naming the first incompatibility.
    public func checkUpgrade(from older: CaseSchema) throws(ModelError) {
        func fail(_ reason: String) -> ModelError {
            ModelError(
                code: .invalidSchema, message: "schema \(version) cannot replace schema \(older.version): \(reason)")
        }
        guard version >= older.version else { throw fail("it is older") }
        for (name, entity) in older.entities {
            guard let kept = entities[name] else { throw fail("it drops entity '\(name)'") }
            guard kept.multiple == entity.multiple else { throw fail("it changes whether '\(name)' has instances") }
            for field in entity.fields {
                guard let now = fieldIndex[name]?[field.name] else {
                    throw fail("it drops field '\(name).\(field.name)'")
                }
                guard now.kind == field.kind, now.type == field.type, now.semantics == field.semantics,
                    (now.category ?? .general) == (field.category ?? .general)
                else { throw fail("it changes the kind, type or category of '\(name).\(field.name)'") }
                if now.values.map(Set.init) != field.values.map(Set.init) {
                    throw fail(
                        "it changes the values of '\(name).\(field.name)', which nodes on schema \(older.version) "
                            + "would refuse; add a field instead")
                }
            }
        }
    }

    /// The data category of a field (`general` for fields not in the schema).
    public func category(of field: FieldKey) -> DataCategory {
        (try? definition(of: field))?.category ?? .general
    }

    public func setSemantics(for field: FieldKey) -> SetSemantics {
        (try? definition(of: field))?.semantics ?? .addWins
    }

    /// Parses a value typed by a user for a register field.
    ///
    /// - Throws: ``ModelError`` (`unknownField`, `wrongKind`, `invalidValue`).
    public func parseValue(_ text: String, for key: FieldKey) throws(ModelError) -> Value {
        let field = try definition(of: key)
        let value: Value
        switch field.type {
        case .integer:
            guard let number = Int64(text) else {
                throw ModelError(
                    code: .invalidValue, message: "field \(key) takes a whole number, not '\(text.prefix(40))'")
            }
            value = .integer(number)
        case .boolean:
            switch text.lowercased() {
            case "true", "yes": value = .boolean(true)
            case "false", "no": value = .boolean(false)
            default:
                throw ModelError(
                    code: .invalidValue, message: "field \(key) takes true or false, not '\(text.prefix(40))'")
            }
        default:
            value = .string(text)
        }
        try validate(value, for: key, field: field)
        return value
    }

    /// Checks that one operation fits the schema.
    ///
    /// - Throws: ``ModelError`` (`unknownField`, `wrongKind`, `invalidValue`).
    public func validate(_ op: FieldOperation) throws(ModelError) {
        let key = op.field
        let field = try definition(of: key)
        func wrongKind(_ verb: String) -> ModelError {
            ModelError(code: .wrongKind, message: "field \(key) is a \(field.kind.rawValue); cannot \(verb) it")
        }
        switch op {
        case .assign(_, let value):
            guard field.kind == .register else { throw wrongKind("set") }
            try validate(value, for: key, field: field)
        case .insert(_, let element), .remove(_, let element):
            guard field.kind == .set else { throw wrongKind("add to or remove from") }
            try validate(.string(element), for: key, field: field)
        case .append(_, let text):
            guard field.kind == .log else { throw wrongKind("append to") }
            try validate(.string(text), for: key, field: field)
        case .redact:
            guard field.kind == .log else { throw wrongKind("redact") }
        case .withheld:
            // Withheld from this node by the sender: only the field must exist.
            break
        }
    }

    /// Checks an operation a person makes here, beyond what every node checks of a
    /// received change: an entry appended to a log says something.
    ///
    /// - Important: Kept apart from ``validate(_:)-(FieldOperation)`` so that a rule made
    ///   stricter for new writes never refuses changes other nodes already hold.
    public func validateLocal(_ op: FieldOperation) throws(ModelError) {
        try validate(op)
        if case .append(let field, let text) = op, text.allSatisfy({ $0.isWhitespace }) {
            throw ModelError(
                code: .invalidValue, message: "field \(field): an empty entry says nothing; write its text")
        }
    }

    /// Checks every operation of a change.
    ///
    /// - Parameter allowingNewerFields: skip operations on fields this schema does not
    ///   have (a received change written under a newer schema; the store holds them).
    /// - Throws: ``ModelError`` naming the change and the first bad operation.
    public func validate(_ change: Change, allowingNewerFields: Bool = false) throws(ModelError) {
        for op in change.ops where !allowingNewerFields || knows(op.field) {
            do {
                try validate(op)
            } catch {
                throw ModelError(code: error.code, message: "change \(change.caseID) \(change.dot): \(error.message)")
            }
        }
    }

    private func validate(_ value: Value, for key: FieldKey, field: FieldDefinition) throws(ModelError) {
        func invalid(_ reason: String) -> ModelError {
            ModelError(code: .invalidValue, message: "field \(key): \(reason)")
        }
        switch (field.type, value) {
        case (.integer, .integer(let number)):
            if let minimum = field.minimum, number < minimum { throw invalid("\(number) is below \(minimum)") }
            if let maximum = field.maximum, number > maximum { throw invalid("\(number) is above \(maximum)") }
        case (.boolean, .boolean):
            break
        case (.integer, _), (.boolean, _), (_, .integer), (_, .boolean):
            throw invalid("expected a value of type \(field.type.rawValue)")
        case (let type, .string(let text)):
            let limit = field.maxLength ?? FieldDefinition.defaultMaximumLength
            // Counting characters walks grapheme clusters; a string with no more
            // UTF-8 bytes than the limit has no more characters either.
            if text.utf8.count > limit && text.count > limit {
                throw invalid("\(text.count) characters, at most \(limit)")
            }
            try Self.validateText(text, type: type, field: field, invalid: invalid)
        }
    }

    private static func validateText(
        _ text: String, type: ValueType, field: FieldDefinition, invalid: (String) -> ModelError
    ) throws(ModelError) {
        let hasControl =
            text.utf8.contains { $0 < 0x20 }
            && text.unicodeScalars.contains { $0.value < 0x20 && (type != .text || ($0 != "\n" && $0 != "\t")) }
        if hasControl { throw invalid("control characters are not allowed") }
        switch type {
        case .string, .text:
            if type == .string && text.isEmpty { throw invalid("empty value") }
        case .enum:
            guard field.values?.contains(text) == true else {
                throw invalid("'\(text.prefix(40))' is not one of \((field.values ?? []).joined(separator: ", "))")
            }
        case .institution:
            guard (try? InstitutionID(text)) != nil else {
                throw invalid("'\(text.prefix(40))' is not an institution ID")
            }
        case .date:
            guard DateText.isDate(text) else { throw invalid("'\(text.prefix(40))' is not a date like 2026-12-01") }
        case .datetime:
            guard DateText.isDateTime(text) else {
                throw invalid("'\(text.prefix(40))' is not a date and time like 2026-11-23T09:30:00+09:00")
            }
        case .integer, .boolean:
            break
        }
    }
}
