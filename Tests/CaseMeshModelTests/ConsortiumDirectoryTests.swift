import CaseMeshCRDT
import Foundation
import Testing

@testable import CaseMeshModel

@Suite struct ConsortiumDirectoryTests {
    static let valid = """
        {"serial": 4, "issuedAt": "2026-12-03T09:00:00Z", "members": [
          {"id": "dongducheon.jungang-dong", "name": "중앙동 행정복지센터", "kind": "dong-office", "region": "동두천시",
           "covers": ["중앙동", "생연동"],
           "nodes": [{"replica": "dongducheon.jungang-dong/server", "address": "10.0.0.5:7400"}]},
          {"id": "dongducheon.senior-welfare", "name": "동두천시 노인복지관", "kind": "senior-welfare-centre",
           "region": "동두천시", "nodes": []}
        ]}
        """

    @Test func aDirectoryNamesItsMembersAndTheDongsTheyCover() throws {
        let directory = try ConsortiumDirectory(json: Array(Self.valid.utf8))
        #expect(directory.serial == 4)
        let dong = try InstitutionID("dongducheon.jungang-dong")
        #expect(directory.name(of: dong) == "중앙동 행정복지센터")
        #expect(directory.member(dong)?.kind.korean == "행정복지센터")
        #expect(directory.routes == ["중앙동": dong, "생연동": dong])
        #expect(directory.name(of: try InstitutionID("unknown.centre")) == "unknown.centre")
        // The envelope as casemesh-ca writes it (its signature is checked elsewhere).
        let envelope = #"{"format":1,"payload":"\#(Data(Self.valid.utf8).base64EncodedString())","signature":""}"#
        #expect(try ConsortiumDirectory(envelope: Array(envelope.utf8)) == directory)
    }

    @Test(arguments: [
        ("{}", "'serial'"),
        (#"{"serial": 0, "issuedAt": "x", "members": []}"#, "'serial'"),
        (#"{"serial": 99999999999, "issuedAt": "x", "members": []}"#, "'serial'"),
        (
            #"{"serial": 1, "issuedAt": "x", "members": [{"id": "Bad ID", "name": "n", "kind": "dong-office", "region": "r"}]}"#,
            "invalid institution ID"
        ),
        (
            #"{"serial": 1, "issuedAt": "x", "members": [{"id": "a.b", "name": "n", "kind": "hospital", "region": "r"}]}"#,
            "'kind'"
        ),
        (
            #"{"serial": 1, "issuedAt": "x", "members": [{"id": "a.b", "name": "n", "kind": "dong-office", "region": "r"}, {"id": "a.b", "name": "m", "kind": "dong-office", "region": "r"}]}"#,
            "listed twice"
        ),
        (
            #"{"serial": 1, "issuedAt": "x", "members": [{"id": "a.b", "name": "n", "kind": "dong-office", "region": "r", "nodes": [{"replica": "c.d/server", "address": "h:1"}]}]}"#,
            "another institution"
        ),
        (
            #"{"serial": 1, "issuedAt": "x", "members": [{"id": "a.b", "name": "", "kind": "dong-office", "region": "r"}]}"#,
            "'name'"
        ),
        ("[1, 2]", "not a JSON object"),
    ])
    func aBadDirectoryIsRefusedNamingWhy(json: String, reason: String) {
        #expect {
            try ConsortiumDirectory(json: Array(json.utf8))
        } throws: { error in
            (error as? ModelError)?.message.contains(reason) == true
        }
    }

    @Test func anEnvelopeThatIsNotOneIsRefused() {
        for text in ["", "{}", #"{"format": 2, "payload": "e30="}"#, #"{"format": 1, "payload": "%%%"}"#] {
            #expect(throws: ModelError.self) { try ConsortiumDirectory(envelope: Array(text.utf8)) }
        }
    }
}
