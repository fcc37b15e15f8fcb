public import CaseMeshModel
import Foundation

/// The bundled case schema as a later release would ship it: the next version,
/// with fields added to the `case` entity (what a consortium's upgrade brings).
public enum NewerSchema {
    /// The JSON of the newer schema.
    public static func json(adding fields: [String] = ["visitPlan"], version: Int? = nil) -> [UInt8] {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../schema/case-schema.json")
        let data = try! Data(contentsOf: source.standardizedFileURL)
        var document = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        document["schemaVersion"] = version ?? (CaseSchema.bundled.version + 1)
        var entities = document["entities"] as! [[String: Any]]
        let index = entities.firstIndex { $0["name"] as? String == "case" }!
        var caseFields = entities[index]["fields"] as! [[String: Any]]
        for name in fields {
            caseFields.append(["name": name, "kind": "register", "type": "string", "maxLength": 200])
        }
        entities[index]["fields"] = caseFields
        document["entities"] = entities
        return [UInt8](try! JSONSerialization.data(withJSONObject: document, options: [.sortedKeys]))
    }

    /// The newer schema, loaded.
    public static func schema(adding fields: [String] = ["visitPlan"]) -> CaseSchema {
        try! CaseSchema(json: json(adding: fields))
    }
}
