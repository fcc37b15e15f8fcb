public import CaseMeshCRDT

/// The fields of the `case` entity that the code itself reads or writes (the
/// schema has more): one constant each, so a field's name is spelled once.
public enum CaseField {
    public static let title = FieldKey(entity: "case", field: "title")
    public static let stage = FieldKey(entity: "case", field: "stage")
    public static let riskLevel = FieldKey(entity: "case", field: "riskLevel")
    public static let leadInstitution = FieldKey(entity: "case", field: "leadInstitution")
    public static let caseManager = FieldKey(entity: "case", field: "caseManager")
    public static let openedAt = FieldKey(entity: "case", field: "openedAt")
    public static let closedReason = FieldKey(entity: "case", field: "closedReason")
    public static let participants = FieldKey(entity: "case", field: "participants")
    public static let tags = FieldKey(entity: "case", field: "tags")
    public static let notes = FieldKey(entity: "case", field: "notes")
    public static let stageEvents = FieldKey(entity: "case", field: "stageEvents")
    public static let accessLog = FieldKey(entity: "case", field: "accessLog")
    public static let handoverOffer = FieldKey(entity: "case", field: "handoverOffer")
    public static let handoverEvents = FieldKey(entity: "case", field: "handoverEvents")
    public static let links = FieldKey(entity: "case", field: "links")

    /// A field of one referral (`referral#r1.progress`).
    public static func referral(_ instance: String, _ field: String) -> FieldKey {
        FieldKey(entity: "referral", instance: instance, field: field)
    }
}
