import Testing

/// The README's main command, as a newcomer runs it.
@Suite struct DemoTests {
    @Test func networkDemoEndsWithEveryParticipantShowingTheSameCase() throws {
        let result = try Binary.run(["demo"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("identical on the dong, senior and mental health centres' nodes: yes"))
        #expect(result.stdout.contains("open conflict on riskLevel"))
        #expect(result.stdout.contains("holds 0 cases and 0 changes"))
        #expect(result.stdout.hasSuffix("Every participant shows the same case.\n"))
    }

    @Test func offlineDemoConvergesByBundles() throws {
        let result = try Binary.run(["demo", "--offline"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("Both replicas hold the same case."))
    }
}
