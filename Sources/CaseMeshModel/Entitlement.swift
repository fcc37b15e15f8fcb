public import CaseMeshCRDT
import Foundation

/// What one institution may receive of one case: the need-to-know rule (the Architecture article in CaseMeshNode.docc,
/// property 5) as a pure function of the case's merged state and the time.
///
/// An institution is entitled to a case only while it is among the case's
/// participants and either it leads the case (the institution that opened it, or
/// the one it was handed to) or a consent entity of the case covers it: names it
/// among the recipients (a remove-wins set, so a withdrawal beats a concurrent
/// grant), names a basis (the person's consent or a statute), lists the data
/// categories it covers, and has not passed its `validUntil`. The categories an
/// institution may receive are the union over the consents that cover it; the lead
/// gets all of them. Without `general` it receives nothing of the case.
///
/// Every node evaluates the same rule: a sender before it sends a change, a
/// receiver on its own state to decide whether it must purge a case. Expiry needs
/// no change to anyone's data: the rule reads the clock.
public struct Entitlement: Hashable, Sendable {
    /// The categories of data the institution may receive; empty when none.
    public var categories: Set<DataCategory>

    /// Whether the institution may receive the case at all.
    public var receivesCase: Bool { categories.contains(.general) }

    public static let participants = CaseField.participants
    public static let lead = CaseField.leadInstitution

    /// Whether a field is one the rule reads (the case's participants and lead, and
    /// every field of every consent).
    public static func isGate(_ field: FieldKey) -> Bool {
        field == participants || field == lead || field.entity == "consent"
    }

    /// The consent fields the rule reads (the others, such as the subject, the
    /// grantor and the purposes, describe the consent but decide nothing).
    static let ruleConsentFields: Set<String> = ["recipients", "basis", "categories", "validUntil"]

    /// Whether a field's value is read by the rule: the case's participants and lead,
    /// and each consent's recipients, basis, categories and end. Their values are
    /// institution IDs, statute names, category names and dates, never personal data,
    /// which is why a departure notice may carry them and nothing else.
    public static func isRuleField(_ field: FieldKey) -> Bool {
        field == participants || field == lead || (field.entity == "consent" && ruleConsentFields.contains(field.field))
    }

    /// Whether this change takes `institution` out of the case: it removes it from the
    /// participants or from a consent's recipients.
    public static func removes(_ institution: InstitutionID, in change: Change) -> Bool {
        change.ops.contains { op in
            guard case .remove(let field, let element) = op, element == institution.rawValue else { return false }
            return field == participants || (field.entity == "consent" && field.field == "recipients")
        }
    }

    /// Evaluates the rule for `institution` on a case whose merged fields (at least
    /// the gate fields) are `fields`, at `nowMillis` since the Unix epoch.
    public init(
        of institution: InstitutionID, fields: [FieldKey: FieldState], schema: CaseSchema, nowMillis: UInt64
    ) {
        categories = []
        let name = institution.rawValue
        guard case .set(let participants)? = fields[Self.participants],
            participants.contains(name, schema.setSemantics(for: Self.participants))
        else { return }
        if case .register(let lead)? = fields[Self.lead], lead.value == .string(name) {
            categories = Set(DataCategory.allCases)
            return
        }
        for covered in Self.consents(covering: institution, fields: fields, schema: schema, nowMillis: nowMillis).values
        {
            categories.formUnion(covered)
        }
    }
}

extension Entitlement {
    /// The consents of a case that cover `institution` at `nowMillis` (name it among
    /// the recipients, name a basis and have not ended), each with the categories it
    /// covers; whether the institution takes part is not asked.
    public static func consents(
        covering institution: InstitutionID, fields: [FieldKey: FieldState], schema: CaseSchema, nowMillis: UInt64
    ) -> [String: Set<DataCategory>] {
        let name = institution.rawValue
        var instances: Set<String> = []
        for key in fields.keys where key.entity == "consent" { instances.insert(key.instance) }
        var found: [String: Set<DataCategory>] = [:]
        for instance in instances {
            func field(_ name: String) -> FieldState? {
                fields[FieldKey(entity: "consent", instance: instance, field: name)]
            }
            let recipientsKey = FieldKey(entity: "consent", instance: instance, field: "recipients")
            guard case .set(let recipients)? = field("recipients"),
                recipients.contains(name, schema.setSemantics(for: recipientsKey)),
                case .register(let basis)? = field("basis"), basis.value != nil,
                case .set(let covered)? = field("categories")
            else { continue }
            // Concurrent values of validUntil: the earliest holds, so a disagreement
            // never extends sharing.
            if case .register(let until)? = field("validUntil") {
                let ends = until.siblings.compactMap { sibling -> UInt64? in
                    if case .string(let text) = sibling.value { return DateText.millis(text) }
                    return nil
                }
                if let end = ends.min(), end <= nowMillis { continue }
                if ends.isEmpty && !until.siblings.isEmpty { continue }
            }
            found[instance] = Set(covered.elements(.addWins).compactMap(DataCategory.init(rawValue:)))
        }
        return found
    }

    /// How long `institution` may receive the case, as of `nowMillis`: the rule only
    /// narrows as time passes (consents run out), so this is the first consent end
    /// at which the rule stops granting the case; stored with a case's listing line
    /// so a list need not evaluate the rule for every case.
    public enum Horizon: Hashable, Sendable {
        /// Not entitled now.
        case none
        /// Entitled until the fields change (the lead, or consents without an end).
        case unbounded
        /// Entitled until this time (milliseconds since the Unix epoch), exclusive.
        case until(UInt64)
    }

    public static func horizon(
        of institution: InstitutionID, fields: [FieldKey: FieldState], schema: CaseSchema, nowMillis: UInt64
    ) -> Horizon {
        func receives(at millis: UInt64) -> Bool {
            Entitlement(of: institution, fields: fields, schema: schema, nowMillis: millis).receivesCase
        }
        guard receives(at: nowMillis) else { return .none }
        var ends: [UInt64] = []
        for (key, state) in fields where key.entity == "consent" && key.field == "validUntil" {
            guard case .register(let register) = state else { continue }
            for case .string(let text) in register.siblings.map(\.value) {
                if let end = DateText.millis(text), end > nowMillis { ends.append(end) }
            }
        }
        for end in ends.sorted() where !receives(at: end) { return .until(end) }
        return .unbounded
    }
}
