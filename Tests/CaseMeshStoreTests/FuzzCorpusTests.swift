import CaseMeshFuzzTargets
import Foundation
import Testing

/// Every saved fuzz input replays through its target: seeds are valid inputs and must
/// be accepted; every crasher the fuzzer ever found must now give an error, not a
/// crash (a trap ends this process, which fails the run). See `scripts/fuzz`.
@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz")

    @Test(arguments: FuzzTarget.allCases)
    func everySavedInputReplaysWithoutACrash(target: FuzzTarget) throws {
        let folder = Self.corpus.appendingPathComponent(target.rawValue)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        #expect(files.contains { $0.hasPrefix("seed-") }, "\(target) has seeds")
        for file in files {
            let bytes = [UInt8](try Data(contentsOf: folder.appendingPathComponent(file)))
            let accepted = target.run(bytes)
            if file.hasPrefix("seed-") { #expect(accepted, "\(target)/\(file) is a valid input") }
        }
    }
}
