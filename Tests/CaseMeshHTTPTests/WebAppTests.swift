import CaseMeshCRDT
import CaseMeshModel
import Foundation
import Testing

@testable import CaseMeshHTTP

@Suite("Web app: words, forms and the guards every page relies on")
struct WebAppTests {
    @Test("Every page string is in both catalogues, and every stage and risk level has its Korean word")
    func catalogues() throws {
        let korean = WebCatalogue.korean
        let english = WebCatalogue.english
        #expect(korean.strings.count > 200 && english.strings.count > 150)
        let pageKeys = korean.strings.keys.filter { !$0.hasPrefix("field_") && !$0.hasPrefix("value_") }
        let missing = pageKeys.filter { english.strings[$0] == nil }.sorted()
        #expect(missing.isEmpty, "missing in en.json: \(missing)")
        #expect(english.strings.keys.filter { korean.strings[$0] == nil }.isEmpty)
        let schema = CaseSchema.bundled
        let stages = try schema.definition(of: FieldKey(parsing: "stage")).values ?? []
        #expect(
            stages.map { korean.stage($0) } == ["발굴", "접수", "욕구사정", "사례회의", "서비스계획", "서비스제공", "모니터링", "종결", "사후관리"])
        for risk in try schema.definition(of: FieldKey(parsing: "riskLevel")).values ?? [] {
            #expect(korean.strings["risk_\(risk)"] != nil && english.strings["risk_\(risk)"] != nil)
        }
        // Every field of the schema has a Korean label.
        for (name, entity) in schema.entities {
            for field in entity.fields {
                #expect(
                    korean.strings["field_\(name).\(field.name)"] != nil, "no Korean label for \(name).\(field.name)")
            }
        }
    }

    @Test("Times read as case workers write them, in Asia/Seoul")
    func times() {
        // 2026-12-02 05:05 UTC is 14:05 in Seoul, a Wednesday.
        let millis: UInt64 = 1_796_187_900_000
        #expect(WebCatalogue.korean.time(millis: millis) == "2026. 12. 2. (수) 14:05")
        #expect(WebCatalogue.english.time(millis: millis) == "Wed 2 Dec 2026, 14:05")
        #expect(WebCatalogue.millis(ofISO: "2026-12-02T14:05:00+09:00") == millis)
        #expect(WebCatalogue.millis(ofISO: "not a date") == nil)
        #expect(WebApp.grouped(1_200_000) == "1,200,000")
    }

    @Test("Form bodies decode, and bad ones are refused with a reason")
    func forms() throws {
        let form = try WebForm(
            bytes: Array("csrf=ab&text=%EA%B0%80%EC%A0%95+%3Cb%3E&s%3Aneeds=food&s%3Aneeds=care".utf8))
        #expect(form.first("text") == "가정 <b>")
        #expect(form.all("s:needs") == ["food", "care"])
        #expect(form.first("missing") == nil)
        #expect(throws: WebFailure.self) { try WebForm(bytes: Array("a=%FF%FE".utf8)) }
        let flood = Array(repeating: "a=1", count: 2001).joined(separator: "&")
        #expect(throws: WebFailure.self) { try WebForm(bytes: Array(flood.utf8)) }
        #expect(try WebForm(bytes: []).pairs.isEmpty)
    }

    @Test("CSRF tokens belong to one session; redirects stay on this node")
    func guards() {
        let tokens = CSRFTokens()
        let token = tokens.token(forSession: "session-a")
        #expect(tokens.check(token, session: "session-a"))
        #expect(!tokens.check(token, session: "session-b"))
        #expect(!tokens.check(nil, session: "session-a"))
        #expect(!tokens.check(String(token.dropLast()) + "0", session: "session-a") || token.hasSuffix("0"))
        #expect(WebApp.safePath("/cases/case-1") == "/cases/case-1")
        for hostile in ["//evil.example/x", "https://evil.example", "/\\evil", "cases", "/a\u{0}b", nil] {
            #expect(WebApp.safePath(hostile) == "/cases")
        }
    }

    @Test("Every template compiles")
    func templates() throws {
        let library = try WebTemplates.library()
        for name in ["layout", "login", "cases", "case", "conflicts", "share", "sync", "error"] {
            #expect(library.getTemplate(named: name) != nil)
        }
        let page = library.render(
            ["message": "<script>x</script>", "t": WebCatalogue.korean.strings], withTemplate: "error")
        #expect(page?.contains("&lt;script&gt;") == true && page?.contains("<script>x") == false)
    }
}

@Suite("Web app: signed notes")
struct SignedNoteTests {
    @Test("A note's signature line names its account; other texts are left as written")
    func signatures() {
        let (body, account) = WebApp.signed("가정방문: 안전 확인\n— 이수진 (lee)")
        #expect(body == "가정방문: 안전 확인" && account == "이수진 (lee)")
        #expect(WebApp.signed("한 줄 기록").account == nil)
        #expect(WebApp.signed("두 줄\n기록").account == nil)
        #expect(WebApp.signed("본문\n— " + String(repeating: "가", count: 200)).account == nil)
    }
}

@Suite("Web app: refusals in the user's language")
struct RefusalWordsTests {
    @Test("Every workflow refusal has its words in both catalogues")
    func refusals() {
        for code in ["stage.unknown", "stage.conflict", "stage.same", "stage.activeService", "stage.reopen"] {
            #expect(WebCatalogue.korean.strings["refusal_\(code)"] != nil, "ko: \(code)")
            #expect(WebCatalogue.english.strings["refusal_\(code)"] != nil, "en: \(code)")
        }
    }
}
