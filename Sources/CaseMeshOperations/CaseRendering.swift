public import CaseMeshCRDT
public import CaseMeshModel
public import CaseMeshStore
import Foundation

/// Renders cases, conflicts and reports for people (text) and programs (JSON).
public enum CaseRendering {
    public static func time(_ hlc: HybridTimestamp) -> String { time(millis: hlc.physical) }

    public static func time(millis: UInt64) -> String { ISOTime.string(millis: millis) }

    public static func value(_ value: Value) -> JSONValue {
        switch value {
        case .string(let text): .string(text)
        case .integer(let number): .number(number)
        case .boolean(let flag): .bool(flag)
        }
    }

    public static func siblings(_ siblings: [RegisterState.Sibling]) -> JSONValue {
        .array(
            siblings.map {
                .object(["value": value($0.value), "by": .string($0.dot.origin.rawValue), "at": .string(time($0.hlc))])
            })
    }

    /// The case as JSON: fields grouped by entity instance, conflicts listed apart.
    public static func json(_ snapshot: CaseSnapshot, schema: CaseSchema) -> JSONValue {
        var entities: [String: [String: JSONValue]] = [:]
        var conflicts: [JSONValue] = []
        for (key, state) in snapshot.fields {
            let entityKey = key.instance.isEmpty ? key.entity : "\(key.entity)#\(key.instance)"
            let rendered: JSONValue
            switch state {
            case .register(let register):
                rendered = register.value.map(value) ?? .null
                if register.isConflict {
                    conflicts.append(
                        .object(["field": .string(key.description), "values": siblings(register.siblings)]))
                }
            case .set(let set):
                rendered = .array(set.elements(schema.setSemantics(for: key)).map(JSONValue.string))
            case .log(let log):
                rendered = .array(
                    log.visibleEntries.map {
                        .object([
                            "at": .string(time($0.hlc)), "by": .string($0.id.dot.origin.rawValue),
                            "text": .string($0.text),
                        ])
                    })
            }
            entities[entityKey, default: [:]][key.field] = rendered
        }
        conflicts.sort { $0.text < $1.text }
        return .object([
            "case": .string(snapshot.caseID.rawValue),
            "entities": .object(entities.mapValues { .object($0) }),
            "conflicts": .array(conflicts),
            "version": .object(
                Dictionary(
                    uniqueKeysWithValues: snapshot.version.sortedEntries.map {
                        ($0.origin.rawValue, JSONValue.number(Int64($0.seq)))
                    })),
        ])
    }

    /// The case as text for a case worker.
    public static func text(_ snapshot: CaseSnapshot, schema: CaseSchema) -> String {
        var lines = ["Case \(snapshot.caseID)"]
        let grouped = Dictionary(grouping: snapshot.fields.keys) {
            $0.instance.isEmpty ? $0.entity : "\($0.entity)#\($0.instance)"
        }
        let order = ["case", "report", "household"]
        let entityKeys = grouped.keys.sorted { lhs, rhs in
            let left = order.firstIndex(of: lhs) ?? order.count
            let right = order.firstIndex(of: rhs) ?? order.count
            return (left, lhs) < (right, rhs)
        }
        for entityKey in entityKeys {
            lines.append("  \(entityKey)")
            for key in grouped[entityKey]!.sorted() {
                switch snapshot.fields[key]! {
                case .register(let register):
                    let shown = register.value?.description ?? ""
                    if register.isConflict {
                        let others = register.siblings.dropFirst().map { "\($0.value) (\($0.dot.origin))" }
                        lines.append(
                            "    \(key.field): \(shown) (\(register.siblings[0].dot.origin))  CONFLICT with \(others.joined(separator: ", "))"
                        )
                    } else {
                        lines.append("    \(key.field): \(shown)")
                    }
                case .set(let set):
                    lines.append(
                        "    \(key.field): \(set.elements(schema.setSemantics(for: key)).joined(separator: ", "))")
                case .log(let log):
                    lines.append("    \(key.field):")
                    for entry in log.visibleEntries {
                        lines.append("      \(time(entry.hlc))  \(entry.id.dot.origin): \(entry.text)")
                    }
                }
            }
        }
        lines.append("  version: \(snapshot.version)")
        return lines.joined(separator: "\n")
    }

    public static func json(_ conflict: ConflictSummary) -> JSONValue {
        .object([
            "case": .string(conflict.caseID.rawValue), "field": .string(conflict.field.description),
            "values": siblings(conflict.siblings),
        ])
    }

    public static func json(_ report: ApplyReport) -> JSONValue {
        .object([
            "applied": .number(Int64(report.applied)),
            "duplicates": .number(Int64(report.duplicates)),
            "pending": .number(Int64(report.deferred)),
            "held_for_newer_schema": .number(Int64(report.heldForNewerSchema)),
            "rejected": .array(
                report.rejected.map {
                    .object([
                        "case": .string($0.caseID.rawValue), "change": .string($0.dot.description),
                        "reason": .string($0.reason),
                    ])
                }),
        ])
    }
}
