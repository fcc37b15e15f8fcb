import Foundation
import Testing

/// A client of a node's HTTP API, through curl (as an institution's script would call it).
struct APIClient {
    let base: String
    var token: String?
    /// More curl options (a CA to trust for https).
    var curlOptions: [String] = []

    struct Answer {
        var status: Int
        var body: String
        var headers: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
    }

    @discardableResult
    func call(
        _ method: String, _ path: String, body: String? = nil, contentType: String = "application/json",
        headers: [String] = [], bearer: String? = nil
    ) throws -> Answer {
        var arguments = ["-s", "-D", "-", "-X", method, base + path, "--max-time", "20"] + curlOptions
        if let token = bearer ?? token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        for header in headers { arguments += ["-H", header] }
        if body != nil { arguments += ["-H", "Content-Type: \(contentType)", "--data-binary", "@-"] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = arguments
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardInput = body == nil ? FileHandle.nullDevice : input
        try process.run()
        if let body {
            input.fileHandleForWriting.write(Data(body.utf8))
            try input.fileHandleForWriting.close()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        let head = parts.first ?? ""
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        return Answer(status: status, body: parts.dropFirst().joined(separator: "\r\n\r\n"), headers: head)
    }

    /// Logs in; returns a client carrying the session token.
    func login(_ username: String, _ password: String) throws -> APIClient {
        let answer = try call(
            "POST", "/api/v1/session", body: #"{"username": "\#(username)", "password": "\#(password)"}"#)
        #expect(answer.status == 201, "login \(username): \(answer.body)")
        var client = self
        client.token = answer.json["token"] as? String
        return client
    }
}

/// The HTTP API end to end: real `casemesh serve --http` processes over real mutual
/// TLS between them, driven over HTTP as an institution's software would.
@Suite(.serialized) struct APITests {
    static let password = "correct horse battery"

    static func addStaff(_ data: [String], _ username: String, _ role: String, _ name: String) throws {
        let result = try Binary.run(
            ["staff", "add", username, "--role", role, "--name", name] + data, input: password + "\n")
        #expect(result.status == 0, "staff add \(username): \(result.stderr)")
    }

    @Test(.timeLimit(.minutes(4)))
    func intakeEditsOnTwoNodesConflictResolvedBySupervisorAndEveryStepInTheAccessLog() throws {
        let root = Binary.temporaryDirectory("api")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root, ["dong": "dong.office/server", "senior": "senior.centre/server"])
        try Self.addStaff(consortium.data("dong"), "kim", "caseworker", "김민지")
        try Self.addStaff(consortium.data("dong"), "park", "supervisor", "박서준")
        try Self.addStaff(consortium.data("senior"), "lee", "caseworker", "이영희")
        let key = try Binary.ok(["intake-key", "add", "kakao-city"] + consortium.data("dong"))

        let dong = try NodeProcess(
            consortium.data("dong") + consortium.tls["dong"]! + ["--http", "127.0.0.1:0"], logPath: root + "/dong.log")
        let dongHTTP = try #require(dong.nextAnnouncement()?["port"] as? Int)
        let senior = try NodeProcess(
            consortium.data("senior") + consortium.tls["senior"]! + ["--http", "127.0.0.1:0"],
            logPath: root + "/senior.log")
        let seniorHTTP = try #require(senior.nextAnnouncement()?["port"] as? Int)
        defer {
            dong.stop()
            senior.stop()
        }
        let anonymous = APIClient(base: "http://127.0.0.1:\(dongHTTP)")
        func syncSenior() throws {
            try Binary.ok(
                ["sync", "--peer", "dong.office/server=\(dong.address)"] + consortium.data("senior")
                    + consortium.tls["senior"]!)
        }

        // A KakaoTalk report arrives through the channel's key, twice: one case.
        let report = #"""
            {"messageId": "kakao-7781", "channel": "kakao", "summary": "이웃 신고: 홀몸 어르신 며칠째 안 보임",
             "crisisSignals": ["isolation", "no-power-use"], "address": "의정부시 중앙로 12", "riskLevel": "high"}
            """#
        let opened = try anonymous.call("POST", "/api/v1/intake", body: report, bearer: key)
        #expect(opened.status == 201, "\(opened.body)")
        let caseID = try #require(opened.json["case"] as? String)
        let again = try anonymous.call("POST", "/api/v1/intake", body: report, bearer: key)
        #expect(again.status == 200 && again.json["case"] as? String == caseID, "the same report opens one case")
        #expect(try anonymous.call("POST", "/api/v1/intake", body: report, bearer: "cmk_wrong").status == 401)

        let kim = try anonymous.login("kim", Self.password)
        let park = try anonymous.login("park", Self.password)
        let listed = try kim.call(
            "GET", "/api/v1/cases?q=홀몸".addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed)!)
        #expect(listed.status == 200 && listed.body.contains(caseID), "\(listed.body)")

        // The supervisor shares it with the senior welfare centre; a caseworker may not.
        let share = #"{"institutions": ["senior.centre"], "allowNewInstitution": ["senior.centre"]}"#
        #expect(try kim.call("POST", "/api/v1/cases/\(caseID)/share", body: share).status == 403)
        let shared = try park.call("POST", "/api/v1/cases/\(caseID)/share", body: share)
        #expect(shared.status == 201, "\(shared.body)")
        try syncSenior()

        // Both edit the risk level while apart, then sync.
        let lee = try APIClient(base: "http://127.0.0.1:\(seniorHTTP)").login("lee", Self.password)
        func setRisk(_ client: APIClient, _ value: String) throws -> APIClient.Answer {
            try client.call(
                "POST", "/api/v1/cases/\(caseID)/changes",
                body: #"{"operations": [{"op": "assign", "field": "riskLevel", "value": "\#(value)"}]}"#)
        }
        #expect(try setRisk(kim, "medium").status == 201)
        #expect(try setRisk(lee, "crisis").status == 201)
        let note = try lee.call(
            "POST", "/api/v1/cases/\(caseID)/changes",
            body:
                #"{"operations": [{"op": "append", "field": "notes", "text": "가정방문: <script>alert(1)</script> 난방 끊김"}]}"#
        )
        #expect(note.status == 201)
        try syncSenior()

        // The conflict shows on both nodes, with both values and their writers.
        for client in [kim, lee] {
            let conflicts = try client.call("GET", "/api/v1/conflicts")
            let list = conflicts.json["conflicts"] as? [[String: Any]] ?? []
            let risk = list.first { $0["field"] as? String == "riskLevel" }
            let values = (risk?["values"] as? [[String: Any]] ?? []).compactMap { $0["value"] as? String }
            #expect(Set(values) == ["medium", "crisis"], "\(client.base): \(conflicts.body)")
        }
        // A caseworker cannot resolve it; the supervisor can, and the resolution syncs.
        let resolve = #"{"field": "riskLevel", "value": "crisis"}"#
        let refused = try kim.call("POST", "/api/v1/cases/\(caseID)/resolve", body: resolve)
        #expect(refused.status == 403 && refused.headers.contains("application/problem+json"), "\(refused.body)")
        #expect(try park.call("POST", "/api/v1/cases/\(caseID)/resolve", body: resolve).status == 201)
        try syncSenior()
        for client in [kim, lee] {
            let shown = try client.call("GET", "/api/v1/cases/\(caseID)")
            #expect(shown.status == 200)
            #expect((shown.json["conflicts"] as? [Any])?.isEmpty == true, "\(client.base): \(shown.body)")
            let entities = shown.json["entities"] as? [String: [String: Any]]
            #expect(entities?["case"]?["riskLevel"] as? String == "crisis")
            #expect(shown.body.contains("난방 끊김"), "the senior centre's note reached the lead")
        }

        // Every step is in the lead's access log under the account that took it.
        try syncSenior()
        let log = try park.call("GET", "/api/v1/cases/\(caseID)/access-log")
        let entries = log.json["entries"] as? [[String: Any]] ?? []
        func actions(of actor: String) -> Set<String> {
            Set(
                entries.filter { ($0["actor"] as? String ?? "").hasPrefix(actor) }.compactMap {
                    $0["action"] as? String
                })
        }
        #expect(actions(of: "intake channel kakao-city") == ["open"], "\(log.body)")
        #expect(actions(of: "kim (김민지)").isSuperset(of: ["read", "write"]), "\(log.body)")
        #expect(actions(of: "park (박서준)").contains("write"), "\(log.body)")
        #expect(actions(of: "lee (이영희)").contains("write"), "the senior centre's entries replicate to the lead")
        #expect(
            entries.allSatisfy {
                ($0["via"] as? String ?? "").contains("from 127.0.0.1")
                    || ($0["via"] as? String ?? "").hasPrefix("casemesh")
            })

        // The change feed: a JSON page with a cursor to resume from, then an event
        // stream from that cursor that delivers a change received by sync.
        var page = try kim.call("GET", "/api/v1/changes")
        var cursor = try #require(page.json["cursor"] as? String)
        while page.json["final"] as? Bool == false {
            page = try kim.call("GET", "/api/v1/changes?since=\(cursor)")
            cursor = try #require(page.json["cursor"] as? String)
        }
        #expect(page.status == 200)
        let stream = Process()
        stream.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        stream.arguments = [
            "-s", "-N", "--max-time", "12", "-H", "Accept: text/event-stream", "-H",
            "Authorization: Bearer \(kim.token!)",
            "http://127.0.0.1:\(dongHTTP)/api/v1/changes?since=\(cursor)",
        ]
        let events = Pipe()
        stream.standardOutput = events
        try stream.run()
        let later = try lee.call(
            "POST", "/api/v1/cases/\(caseID)/changes",
            body: #"{"operations": [{"op": "append", "field": "notes", "text": "모니터링 전화"}]}"#)
        let laterChange = try #require(later.json["change"] as? String)
        try syncSenior()
        stream.waitUntilExit()
        let received = String(decoding: events.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(received.contains("event: changes") && received.contains(laterChange), "\(received.prefix(2000))")

        // The OpenAPI document names every route the node serves.
        let spec = try anonymous.call("GET", "/api/v1/openapi.json")
        let paths = (spec.json["paths"] as? [String: [String: Any]]) ?? [:]
        for (method, path) in [
            ("post", "/api/v1/session"), ("get", "/api/v1/session"), ("delete", "/api/v1/session"),
            ("get", "/api/v1/cases"), ("post", "/api/v1/cases"), ("get", "/api/v1/cases/{id}"),
            ("post", "/api/v1/cases/{id}/changes"), ("get", "/api/v1/conflicts"),
            ("post", "/api/v1/cases/{id}/resolve"), ("post", "/api/v1/cases/{id}/stage"),
            ("post", "/api/v1/cases/{id}/share"), ("post", "/api/v1/cases/{id}/withdraw"),
            ("get", "/api/v1/cases/{id}/access-log"), ("get", "/api/v1/quarantine"), ("get", "/api/v1/peers"),
            ("post", "/api/v1/intake"), ("get", "/api/v1/changes"), ("get", "/api/v1/openapi.json"),
        ] {
            #expect(paths[path]?[method] != nil, "the OpenAPI document lacks \(method) \(path)")
        }
        #expect(spec.json["openapi"] as? String == "3.1.0")

        // Nothing secret is kept in clear: not the password, not a session token.
        let database = try Data(contentsOf: URL(fileURLWithPath: root + "/dong/casemesh.sqlite"))
        for secret in [Self.password, kim.token!, key] {
            #expect(database.range(of: Data(secret.utf8)) == nil, "a secret is stored in clear")
        }
        #expect(!dong.log.contains(Self.password) && !dong.log.contains(kim.token!))
    }

    @Test(.timeLimit(.minutes(2)))
    func badInputGetsAClear4xxAndNeverAPartialChange() throws {
        let root = Binary.temporaryDirectory("api-bad")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["dong": "dong.office/server"])
        try Self.addStaff(consortium.data("dong"), "kim", "caseworker", "김민지")
        let node = try NodeProcess(
            consortium.data("dong") + consortium.tls["dong"]! + ["--http", "127.0.0.1:0"], logPath: root + "/dong.log")
        let port = try #require(node.nextAnnouncement()?["port"] as? Int)
        defer { node.stop() }
        let anonymous = APIClient(base: "http://127.0.0.1:\(port)")
        #expect(try anonymous.call("GET", "/api/v1/cases").status == 401)
        #expect(try anonymous.call("GET", "/api/v1/cases", bearer: "not-a-session").status == 401)
        let wrong = try anonymous.call("POST", "/api/v1/session", body: #"{"username": "kim", "password": "nope"}"#)
        #expect(wrong.status == 401 && wrong.json["detail"] as? String == "wrong username or password")
        let kim = try anonymous.login("kim", Self.password)
        let opened = try kim.call("POST", "/api/v1/cases", body: #"{"fields": {"title": "테스트"}}"#)
        #expect(opened.status == 201, "\(opened.body)")
        let caseID = try #require(opened.json["case"] as? String)
        let changes = "/api/v1/cases/\(caseID)/changes"
        let cases: [(String, String, String, Int)] = [
            ("POST", changes, "{not json", 400),
            ("POST", changes, #"{"operations": "riskLevel"}"#, 400),
            (
                "POST", changes, #"{"operations": [{"op": "assign", "field": "riskLevel", "value": "high"}], "x": 1}"#,
                400
            ),
            (
                "POST", changes,
                #"{"operations": [{"op": "assign", "field": "title", "value": "ok"}, {"op": "assign", "field": "riskLevel", "value": "bogus"}]}"#,
                422
            ),
            ("POST", changes, #"{"operations": [{"op": "assign", "field": "no such field", "value": "x"}]}"#, 422),
            ("POST", changes, #"{"operations": [{"op": "assign", "field": "riskLevel", "value": [1]}]}"#, 400),
            ("POST", changes, #"{"operations": [{"op": "explode", "field": "riskLevel"}]}"#, 400),
            (
                "POST", "/api/v1/cases/case-00000000000000000000000000/changes",
                #"{"operations": [{"op": "append", "field": "notes", "text": "x"}]}"#, 404
            ),
            ("GET", "/api/v1/cases/../../etc/passwd", "", 404),
            ("POST", "/api/v1/cases/\(caseID)/resolve", #"{"field": "riskLevel", "value": "high"}"#, 403),
            ("GET", "/api/v1/peers", "", 403),
            ("GET", "/api/v1/cases?limit=100000", "", 400),
            ("GET", "/api/v1/changes?since=bogus", "", 400),
            ("GET", "/api/v1/changes?since=other-log.1", "", 410),
        ]
        for (method, path, body, status) in cases {
            let answer = try kim.call(method, path, body: body.isEmpty ? nil : body)
            #expect(answer.status == status, "\(method) \(path) \(body): \(answer.status) \(answer.body)")
            #expect(answer.headers.contains("application/problem+json"), "\(path): \(answer.headers)")
            #expect(!((answer.json["detail"] as? String) ?? "").isEmpty)
        }
        // The refused change with a good operation in it left nothing behind.
        let shown = try kim.call("GET", "/api/v1/cases/\(caseID)")
        #expect((shown.json["entities"] as? [String: [String: Any]])?["case"]?["title"] as? String == "테스트")
        // An oversized body.
        let huge =
            #"{"operations": [{"op": "append", "field": "notes", "text": ""# + String(repeating: "가", count: 400_000)
            + #""}]}"#
        #expect(try kim.call("POST", changes, body: huge).status == 413)
        // Five wrong passwords lock the account, even against the right one.
        for _ in 0..<5 {
            _ = try anonymous.call(
                "POST", "/api/v1/session", body: #"{"username": "kim", "password": "wrong-password"}"#)
        }
        let locked = try anonymous.call(
            "POST", "/api/v1/session", body: #"{"username": "kim", "password": "\#(Self.password)"}"#)
        #expect(locked.status == 423, "\(locked.body)")
        #expect(!node.log.contains("error"), "no server error was logged: \(node.log)")
    }

    /// The feed resumes from a stored cursor after the node restarts; a resident
    /// number sent to identify a person is nowhere in the database or the log; past
    /// its limit of requests in flight the node answers 503 at once.
    @Test(.timeLimit(.minutes(3)))
    func theFeedResumesAcrossARestartResidentNumbersStayOutOfStorageAndFloodsGet503() throws {
        let root = Binary.temporaryDirectory("api-restart")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["dong": "dong.office/server"])
        try Self.addStaff(consortium.data("dong"), "kim", "caseworker", "김민지")
        let secret = root + "/secret"
        try Data(String(repeating: "s3cr3t-", count: 8).utf8).write(to: URL(fileURLWithPath: secret))
        let arguments =
            consortium.data("dong") + consortium.tls["dong"]! + [
                "--http", "127.0.0.1:0", "--http-max-requests", "1", "--resident-number-secret", secret,
            ]
        var node = try NodeProcess(arguments, logPath: root + "/dong-1.log")
        var port = try #require(node.nextAnnouncement()?["port"] as? Int)
        var kim = try APIClient(base: "http://127.0.0.1:\(port)").login("kim", Self.password)
        let opened = try kim.call("POST", "/api/v1/cases", body: #"{"fields": {"title": "재시작"}}"#)
        let caseID = try #require(opened.json["case"] as? String)
        let number = "480215-1234567"
        let identified = try kim.call(
            "POST", "/api/v1/persons/identify",
            body: #"{"case": "\#(caseID)", "person": "p1", "residentNumber": "\#(number)"}"#)
        #expect(identified.status == 201, "\(identified.body)")
        let found = try kim.call("POST", "/api/v1/persons/find", body: #"{"residentNumber": "\#(number)"}"#)
        #expect(found.body.contains(caseID) && found.body.contains("p1"), "\(found.body)")
        var page = try kim.call("GET", "/api/v1/changes")
        while page.json["final"] as? Bool == false {
            page = try kim.call("GET", "/api/v1/changes?since=\(page.json["cursor"] as? String ?? "")")
        }
        let cursor = try #require(page.json["cursor"] as? String)

        // An event stream holds the one request slot while it lasts: another request
        // is refused at once.
        let stream = Process()
        stream.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        stream.arguments = [
            "-s", "-N", "--max-time", "4", "-H", "Accept: text/event-stream", "-H",
            "Authorization: Bearer \(kim.token!)", "http://127.0.0.1:\(port)/api/v1/changes?since=\(cursor)",
        ]
        let streamed = Pipe()
        stream.standardOutput = streamed
        try stream.run()
        _ = streamed.fileHandleForReading.readData(ofLength: 5)  // "retry": the stream is open
        let streams = [stream]
        let flooded = try kim.call("GET", "/api/v1/cases")
        #expect(flooded.status == 503 && flooded.headers.contains("Retry-After"), "\(flooded.status) \(flooded.body)")
        for stream in streams { stream.waitUntilExit() }
        #expect(
            eventually(10) { (try? kim.call("GET", "/api/v1/cases").status) == 200 },
            "the slot comes back once the stream's client has gone")

        // Restart; a change written meanwhile is in the feed from the stored cursor.
        #expect(node.stop() == 0)
        let logs = [node.log]
        try Binary.ok(["case", "note", caseID, "재시작 사이의 메모"] + consortium.data("dong"))
        node = try NodeProcess(arguments, logPath: root + "/dong-2.log")
        port = try #require(node.nextAnnouncement()?["port"] as? Int)
        defer { node.stop() }
        kim = try APIClient(base: "http://127.0.0.1:\(port)").login("kim", Self.password)
        let resumed = try kim.call("GET", "/api/v1/changes?since=\(cursor)")
        #expect(resumed.status == 200)
        let fields = (resumed.json["changes"] as? [[String: Any]] ?? []).flatMap { $0["fields"] as? [String] ?? [] }
        #expect(fields.contains("notes"), "\(resumed.body)")
        #expect(!fields.contains("title"), "nothing before the cursor comes again")

        // The resident number: in no file of the data directory, in no log.
        let directory = root + "/dong"
        for file in try FileManager.default.contentsOfDirectory(atPath: directory) {
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))) ?? Data()
            for form in [number, number.replacingOccurrences(of: "-", with: "")] {
                #expect(bytes.range(of: Data(form.utf8)) == nil, "\(file) holds the resident number")
            }
        }
        for log in logs + [node.log] { #expect(!log.contains("1234567")) }
    }

    @Test(.timeLimit(.minutes(2)))
    func offLoopbackTheAPIIsServedOnlyOverTLSWithTheInstitutionsWebCertificate() throws {
        let root = Binary.temporaryDirectory("api-tls")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["dong": "dong.office/server"])
        try Self.addStaff(consortium.data("dong"), "kim", "caseworker", "김민지")
        // Without a web certificate, an address other than loopback is refused.
        let refused = try Binary.run(
            ["serve", "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"] + consortium.data("dong")
                + consortium.tls["dong"]!)
        #expect(refused.status != 0 && refused.stderr.contains("not a loopback address"), "\(refused.stderr)")
        // The institution's own web certificate (not the consortium CA's).
        let web = try TestAuthority.shell(
            """
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
              -addext subjectAltName=IP:127.0.0.1 -keyout '\(root)/web.key' -out '\(root)/web.pem' 2>&1
            """)
        #expect(web.status == 0, "\(web.output)")
        let node = try NodeProcess(
            consortium.data("dong") + consortium.tls["dong"]! + [
                "--http", "127.0.0.1:0", "--http-cert", root + "/web.pem", "--http-key", root + "/web.key",
            ], logPath: root + "/dong.log")
        defer { node.stop() }
        let announced = try #require(node.nextAnnouncement())
        let port = try #require(announced["port"] as? Int)
        #expect((announced["url"] as? String)?.hasPrefix("https://") == true)
        var client = APIClient(base: "https://127.0.0.1:\(port)", curlOptions: ["--cacert", root + "/web.pem"])
        client = try client.login("kim", Self.password)
        #expect(client.token != nil)
        #expect(try client.call("GET", "/api/v1/cases").status == 200)
        // Plain HTTP to the TLS listener gets no answer, and no password crosses it.
        let plain = try APIClient(base: "http://127.0.0.1:\(port)").call("GET", "/api/v1/session")
        #expect(plain.status == 0 || plain.status == 400, "\(plain.status)")
    }
}
