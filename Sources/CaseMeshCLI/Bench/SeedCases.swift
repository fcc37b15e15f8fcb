import ArgumentParser
import CaseMeshCRDT
import CaseMeshModel
import CaseMeshOperations
import CaseMeshStore
import Foundation

/// `casemesh bench seed`: fills a replica with realistic cases (titles, stages, risk,
/// reports, households, notes), so the web app's pages and the API can be timed on
/// a node that holds as many cases as an institution's server does.
struct SeedCases: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed",
        abstract: "Open N realistic cases in a replica (for timing pages and the API on a full node).",
        discussion: """
            The cases are this institution's own (it leads them and is their only participant), at every stage \
            but discovery, so a node's intake queue stays as its channels fill it. Prints one JSON object with \
            the cases opened and the seconds taken.
            """)

    @OptionGroup var store: StoreOptions
    @Option(help: "Cases to open.") var cases = 10_000
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Option(
        help: "An institution every case is shared with (a consent covering general data), to time sync to it.")
    var sharedWith: String?

    func validate() throws {
        guard (1...1_000_000).contains(cases) else { throw ValidationError("--cases must be 1 to 1000000") }
    }

    func run() throws {
        let replica = try CLIError.wrap { try store.openStore() }
        var generator = SeededGenerator(seed: seed)
        let stages = [
            "intake", "assessment", "conference", "planning", "provision", "monitoring", "closed", "follow-up",
        ]
        let risks = ["low", "medium", "high", "crisis"]
        let channels = ["kakao", "hotline-129", "iot-smart-plug", "neighbour", "bigdata", "institution-referral"]
        let surnames = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임"]
        let given = ["영수", "순자", "민준", "서연", "정희", "성호", "미경", "동현", "옥자", "춘자"]
        let households = ["single-elderly", "elderly-couple", "single-adult", "single-parent", "grandparent-headed"]
        let dongs = ["중앙동", "생연1동", "생연2동", "보산동", "불현동", "송내동", "소요동", "상패동"]
        func key(_ text: String) throws -> FieldKey { try FieldKey(parsing: text) }
        let sharing =
            try sharedWith.map { name in
                try CLIError.wrap { ConsentGrant(recipients: [try InstitutionID(name)]).ops() }
            } ?? []
        let started = ContinuousClock.now
        let now = Date().timeIntervalSince1970
        let formatter = ISO8601DateFormatter()
        for index in 0..<cases {
            let name = surnames.randomElement(using: &generator)! + given.randomElement(using: &generator)!
            let received = Date(
                timeIntervalSince1970: now - Double(Int.random(in: 1...400, using: &generator)) * 86_400)
            let due = Date(timeIntervalSince1970: now + Double(Int.random(in: -20...60, using: &generator)) * 86_400)
            let dueText = String(formatter.string(from: due).prefix(10))
            let household = households.randomElement(using: &generator)!
            let ops: [FieldOperation] = try CLIError.wrap {
                [
                    .assign(try key("title"), .string("\(name) 가구 — \(index + 1)")),
                    .assign(try key("stage"), .string(stages.randomElement(using: &generator)!)),
                    .assign(try key("riskLevel"), .string(risks.randomElement(using: &generator)!)),
                    .assign(try key("caseManager"), .string("담당 \(given.randomElement(using: &generator)!)")),
                    .assign(try key("report.channel"), .string(channels.randomElement(using: &generator)!)),
                    .assign(try key("report.receivedAt"), .string(formatter.string(from: received))),
                    .assign(try key("household.type"), .string(household)),
                    .assign(try key("household.dong"), .string(dongs.randomElement(using: &generator)!)),
                    .assign(try key("person#p1.name"), .string(name)),
                    .assign(try key("task#t1.title"), .string("방문 상담")),
                    .assign(try key("task#t1.dueAt"), .string(dueText)),
                    .append(try key("notes"), "초기 상담: \(name) 님 가구의 욕구를 확인했습니다."),
                ]
            }
            _ = try CLIError.wrap { try replica.openCase(ops: ops + sharing, using: &generator) }
        }
        let seconds = (ContinuousClock.now - started).seconds
        emit(JSONValue.object(["cases": .number(Int64(cases)), "seconds": .double(seconds)]).text)
    }
}
