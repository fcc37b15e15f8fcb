import Foundation
import Testing

/// The README's main command, as a newcomer runs it.
@Suite struct DemoTests {
    @Test func networkDemoEndsWithEveryParticipantShowingTheSameCase() throws {
        let result = try Binary.run(["demo", "--no-web"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("identical on the dong, senior and mental health centres' nodes: yes"))
        #expect(result.stdout.contains("open conflict on riskLevel"))
        #expect(result.stdout.contains("holds 0 cases and 0 changes"))
        #expect(result.stdout.hasSuffix("Every participant shows the same case.\n"))
    }

    /// Without --no-web the demo leaves the four nodes serving their web apps, one
    /// login each, until it is told to stop.
    @Test func networkDemoLeavesFourWebAppsRunningUntilInterrupted() throws {
        let output = Pipe()
        let process = try Binary.start(["demo", "--web-port", "0"], stdout: output)
        defer { if process.isRunning { process.terminate() } }
        var text = ""
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, text.components(separatedBy: "login demo / ").count < 5 {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        let lines = text.split(separator: "\n").filter { $0.contains("login demo / ") }
        #expect(lines.count == 4, "\(text)")
        for line in lines {
            guard let url = line.split(separator: " ").first(where: { $0.hasPrefix("http://127.0.0.1:") }),
                let password = line.components(separatedBy: "login demo / ").last
            else {
                Issue.record("no URL and login in '\(line)'")
                continue
            }
            // The printed login works on the printed URL.
            let login = try TestAuthority.shell(
                "curl -s -o /dev/null -w '%{http_code}' -X POST '\(url)api/v1/session' -H 'Content-Type: application/json' "
                    + "-d '{\"username\": \"demo\", \"password\": \"\(password)\"}'")
            #expect(login.output == "201", "login on \(url): \(login.output)")
            let page = try TestAuthority.shell("curl -s '\(url)login'")
            #expect(page.output.contains("로그인"))
        }
        process.interrupt()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
    }

    @Test func offlineDemoConvergesByBundles() throws {
        let result = try Binary.run(["demo", "--offline"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("Both replicas hold the same case."))
        #expect(result.stdout.contains("sealed changes carried"), "bundles carry seals, verified on import")
    }
}
