public import CaseMeshCRDT
import Foundation

/// A consent (or statutory basis) for sharing a case with institutions, as the
/// field writes that record it: the recipients join the case's participants and
/// the consent entity names them, its basis, purposes, categories and end.
///
/// Sharing a case means both: participation says who works on the case, the
/// consent says who may receive its data (``Entitlement``).
public struct ConsentGrant: Hashable, Sendable {
    /// The consent entity's instance (`consent#c1`).
    public var instance: String
    public var recipients: [InstitutionID]
    /// `consent`, or the statute that allows sharing without it.
    public var basis: String
    public var categories: [DataCategory]
    public var purposes: [String]
    /// An ISO 8601 date-time; `nil` for no end.
    public var validUntil: String?
    /// Whose data: a person instance such as `p1`, or `household`.
    public var subject: String
    public var grantor: String

    public init(
        instance: String = "c1", recipients: [InstitutionID], basis: String = "consent",
        categories: [DataCategory] = [.general], purposes: [String] = ["case-management"], validUntil: String? = nil,
        subject: String = "household", grantor: String = "subject"
    ) {
        self.instance = instance
        self.recipients = recipients
        self.basis = basis
        self.categories = categories
        self.purposes = purposes
        self.validUntil = validUntil
        self.subject = subject
        self.grantor = grantor
    }

    /// Refuses a consent that could not work as written: no recipient, no basis, no
    /// data category, or an end that is not an ISO 8601 date-time in the future.
    ///
    /// - Parameter nowMillis: the time now, milliseconds since the Unix epoch.
    public func validate(nowMillis: UInt64) throws(ModelError) {
        guard !recipients.isEmpty else {
            throw ModelError(code: .invalidValue, message: "a consent names at least one recipient institution")
        }
        guard !basis.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ModelError(code: .invalidValue, message: "a consent names its basis: consent, or the statute")
        }
        guard !categories.isEmpty else {
            throw ModelError(code: .invalidValue, message: "a consent covers at least one data category")
        }
        if let validUntil {
            guard let end = DateText.millis(validUntil) else {
                throw ModelError(
                    code: .invalidValue,
                    message:
                        "the consent's end '\(validUntil.prefix(40))' is not a date-time such as 2027-11-23T00:00:00+09:00"
                )
            }
            guard end > nowMillis else {
                throw ModelError(code: .invalidValue, message: "the consent's end \(validUntil) has already passed")
            }
        }
    }

    /// The consent instance named after an institution (`senior.centre` → `senior-centre`),
    /// so that sharing with one institution never widens another's consent.
    public static func instance(for institution: InstitutionID) -> String {
        String(institution.rawValue.map { $0 == "." ? "-" : $0 }.prefix(64))
    }

    private func key(_ field: String) -> FieldKey { FieldKey(entity: "consent", instance: instance, field: field) }

    /// The writes that record the grant (and add the recipients to the participants
    /// when `addingParticipants`).
    public func ops(addingParticipants: Bool = true) -> [FieldOperation] {
        var ops: [FieldOperation] = [
            .assign(key("subject"), .string(subject)), .assign(key("grantor"), .string(grantor)),
            .assign(key("basis"), .string(basis)),
        ]
        ops += purposes.map { .insert(key("purposes"), $0) }
        ops += categories.map { .insert(key("categories"), $0.rawValue) }
        ops += recipients.map { .insert(key("recipients"), $0.rawValue) }
        if let validUntil { ops.append(.assign(key("validUntil"), .string(validUntil))) }
        if addingParticipants { ops += recipients.map { .insert(Entitlement.participants, $0.rawValue) } }
        return ops
    }

    /// The write that withdraws the consent from one recipient (a withdrawal beats a
    /// concurrent grant: recipients is a remove-wins set).
    public func withdrawal(from institution: InstitutionID) -> FieldOperation {
        .remove(key("recipients"), institution.rawValue)
    }
}
