import CaseMeshCRDT
import CaseMeshModel
import Testing

@Suite struct CaseSchemaTests {
    let schema = CaseSchema.bundled

    @Test func bundledSchemaLoadsWithTheWelfareEntities() {
        for entity in [
            "case", "report", "household", "person", "assessment", "plan", "referral", "service", "task", "consent",
        ] {
            #expect(schema.entities[entity] != nil, "missing \(entity)")
        }
        #expect(schema.version == 3)
        #expect(schema.category(of: try! FieldKey(parsing: "person#p1.healthNotes")) == .sensitive)
        #expect(schema.category(of: try! FieldKey(parsing: "person#p1.rrnHash")) == .uniqueID)
        #expect(schema.category(of: try! FieldKey(parsing: "riskLevel")) == .general)
        #expect(schema.setSemantics(for: try! FieldKey(parsing: "consent#c1.recipients")) == .removeWins)
    }

    @Test func reportChannelsCoverEveryDiscoveryRoute() throws {
        let channel = try schema.definition(of: FieldKey(parsing: "report.channel"))
        #expect(
            Set(channel.values ?? []) == [
                "kakao", "sns", "hotline-080", "hotline-129", "iot-smart-plug", "safety-app", "neighbour",
                "institution-referral", "bigdata", "self",
            ])
    }

    @Test func writesOutsideTheSchemaAreRefused() throws {
        func code(_ body: () throws -> Void) -> ModelError.Code? {
            do { try body() } catch let error as ModelError { return error.code } catch { return nil }
            return nil
        }
        #expect(code { _ = try schema.parseValue("x", for: FieldKey(parsing: "nosuch")) } == .unknownField)
        #expect(code { _ = try schema.parseValue("x", for: FieldKey(parsing: "person.name")) } == .unknownField)
        #expect(code { try schema.validate(.insert(FieldKey(parsing: "stage"), "intake")) } == .wrongKind)
        #expect(code { try schema.validate(.assign(FieldKey(parsing: "tags"), .string("x"))) } == .wrongKind)
        #expect(code { _ = try schema.parseValue("urgent", for: FieldKey(parsing: "riskLevel")) } == .invalidValue)
        #expect(code { _ = try schema.parseValue("many", for: FieldKey(parsing: "household.size")) } == .invalidValue)
        #expect(code { _ = try schema.parseValue("0", for: FieldKey(parsing: "household.size")) } == .invalidValue)
        #expect(
            code { _ = try schema.parseValue("2026-02-30", for: FieldKey(parsing: "serviceDueAt")) } == .invalidValue)
        #expect(code { try schema.validate(.insert(FieldKey(parsing: "participants"), "Not An ID")) } == .invalidValue)
        #expect(code { try schema.validate(.assign(FieldKey(parsing: "stage"), .integer(3))) } == .invalidValue)
    }

    @Test func valuesInsideTheSchemaAreAccepted() throws {
        #expect(try schema.parseValue("crisis", for: FieldKey(parsing: "riskLevel")) == .string("crisis"))
        #expect(try schema.parseValue("3", for: FieldKey(parsing: "household.size")) == .integer(3))
        #expect(try schema.parseValue("yes", for: FieldKey(parsing: "person#p1.disability")) == .boolean(true))
        #expect(
            try schema.parseValue("2026-11-23T09:30:00+09:00", for: FieldKey(parsing: "report.receivedAt"))
                == .string("2026-11-23T09:30:00+09:00"))
        #expect(try schema.parseValue("2024-02-29", for: FieldKey(parsing: "plan#p1.dueAt")) == .string("2024-02-29"))
        try schema.validate(.insert(FieldKey(parsing: "participants"), "uijeongbu.mental-health"))
        #expect(schema.setSemantics(for: FieldKey(entity: "case", field: "participants")) == .addWins)
    }

    @Test func malformedSchemaDefinitionsAreRefused() {
        let broken = [
            #"{"schemaVersion": 1, "entities": []}"#,
            #"{"schemaVersion": 1, "entities": [{"name": "case", "multiple": false, "fields": [{"name": "x", "kind": "register", "type": "enum"}]}]}"#,
            #"{"schemaVersion": 1, "entities": [{"name": "case", "multiple": false, "fields": [{"name": "participants", "kind": "log", "type": "text"}]}]}"#,
            "not json",
        ]
        for text in broken {
            #expect(throws: ModelError.self) { try CaseSchema(json: Array(text.utf8)) }
        }
    }
}
