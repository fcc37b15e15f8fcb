import Foundation
import Testing

/// The README's quick tour, run as written: every shell block of the section, in
/// order, in a new folder, with `casemesh` and `casemesh-ca` on `PATH`, so the tour
/// cannot drift from the code.
@Suite struct ReadmeTourTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The `sh` blocks between two headings of the README.
    static func shellBlocks(from start: String, to end: String) throws -> [String] {
        let readme = try String(contentsOf: repository.appendingPathComponent("README.md"), encoding: .utf8)
        guard let from = readme.range(of: start),
            let to = readme.range(of: end, range: from.upperBound..<readme.endIndex)
        else { return [] }
        var blocks: [String] = []
        var current: [Substring]?
        for line in readme[from.upperBound..<to.lowerBound].split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line == "```sh" {
                current = []
            } else if current != nil, line == "```" {
                blocks.append(current!.joined(separator: "\n"))
                current = nil
            } else {
                current?.append(line)
            }
        }
        return blocks
    }

    @Test(.timeLimit(.minutes(3))) func theQuickTourRunsAsWrittenInANewFolder() throws {
        let blocks = try Self.shellBlocks(from: "## A quick tour", to: "## The HTTP API")
        #expect(blocks.count >= 3, "the tour has its blocks")
        let folder = Binary.temporaryDirectory("readme-tour")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let script = "set -euo pipefail\n" + blocks.joined(separator: "\n")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script]
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        var environment = ProcessInfo.processInfo.environment
        let path = [Binary.url.deletingLastPathComponent().path, Self.repository.appendingPathComponent("certs").path]
        environment["PATH"] = (path + [environment["PATH"] ?? "/usr/bin:/bin"]).joined(separator: ":")
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "the tour stopped:\n\(text.suffix(3000))")
        // What the tour promises along the way.
        #expect(text.contains("CONFLICT"), "the offline edits conflict")
        #expect(text.contains("purged"), "the withdrawal purged the laptop's copy")
        #expect(text.contains("\"ok\":true"), "the TLS sync succeeded: \(text.suffix(1500))")
        // Nothing was written outside the folder it ran in.
        let made = try FileManager.default.contentsOfDirectory(atPath: folder)
        #expect(made.contains("dong") && made.contains("ca"))
    }
}
