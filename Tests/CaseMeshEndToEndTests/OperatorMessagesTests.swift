import Foundation
import Testing

/// What an operator sees when something is set up wrong: one sentence that says what
/// is wrong and what to do, never a library's internals; and one node per directory.
@Suite(.serialized) struct OperatorMessagesTests {
    @Test func aSecondNodeOnOneDirectoryAndBadAddressesGetOneClearSentence() throws {
        let root = Binary.temporaryDirectory("operator")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(
            in: root, ["dong": "dong.office/server", "senior": "senior.centre/server"])
        let tls = consortium.tls
        let senior = try NodeProcess(consortium.data("senior") + tls["senior"]!, logPath: root + "/senior.log")
        defer { senior.stop() }

        // A second serve on the same data directory is refused, naming the holder.
        let second = try Binary.run(
            ["serve", "--listen", "127.0.0.1:0"] + consortium.data("senior") + tls["senior"]!)
        #expect(second.status != 0)
        #expect(
            second.stderr.contains("another casemesh serve (PID \(senior.process.processIdentifier))"),
            "\(second.stderr)")
        // The short-lived commands keep working beside it.
        try Binary.ok(["case", "list"] + consortium.data("senior"))

        // The port is taken.
        let taken = try Binary.run(["serve", "--listen", senior.address] + consortium.data("dong") + tls["dong"]!)
        #expect(taken.stderr.contains("\(senior.address) is already in use"), "\(taken.stderr)")
        #expect(!taken.stderr.contains("errno") && !taken.stderr.contains("bind(descriptor"))

        // Nothing listens at the peer's address.
        let down = try Binary.run(
            ["sync"] + consortium.data("dong") + tls["dong"]! + ["--peer", "senior.centre/server=127.0.0.1:9"])
        #expect(down.stderr.contains("nothing listens at 127.0.0.1:9"), "\(down.stderr)")
        #expect(!down.stderr.contains("SingleConnectionFailure"))

        // Another replica answers at the address.
        let wrong = try Binary.run(
            ["sync"] + consortium.data("dong") + tls["dong"]! + ["--peer", "mental.centre/server=\(senior.address)"])
        #expect(
            wrong.stderr.contains(
                "presents the certificate of senior.centre/server, but mental.centre/server was expected"),
            "\(wrong.stderr)")
        // The listening side says, in words, that the peer hung up (during the handshake or
        // right after it, whichever side judged first).
        #expect(
            eventually(5) {
                senior.log.contains("closed the connection")
            },
            "\(senior.log)")
        #expect(!senior.log.contains("I/O on closed channel"))
    }

    /// A peer that trickles a TLS record header one byte at a time never presents a
    /// certificate: it is cut off by the total handshake deadline, not kept for ever by
    /// an idle timer that restarts on every byte.
    @Test(.timeLimit(.minutes(1))) func aSlowHandshakeIsCutOffByItsDeadline() throws {
        let root = Binary.temporaryDirectory("slow-handshake")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let consortium = try TestConsortium(in: root, ["senior": "senior.centre/server"])
        let senior = try NodeProcess(consortium.data("senior") + consortium.tls["senior"]!, logPath: root + "/s.log")
        defer { senior.stop() }
        let script = root + "/slow.py"
        try """
        import socket, time
        s = socket.create_connection(("127.0.0.1", \(senior.port)))
        start = time.time()
        try:
            for byte in bytes([0x16, 0x03, 0x01, 0x02, 0x00]) * 10:
                s.send(bytes([byte]))
                s.settimeout(2)
                try:
                    if s.recv(1) == b"":
                        break
                except socket.timeout:
                    pass
        except OSError:
            pass
        print(round(time.time() - start))
        """.write(toFile: script, atomically: true, encoding: .utf8)
        let result = try TestAuthority.shell("python3 '\(script)'")
        let seconds = Int(result.output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 999
        #expect(seconds <= 14, "closed after \(seconds) s (the deadline is 10 s): \(result.output)")
        #expect(eventually(5) { senior.log.contains("not verified within 10 s") }, "\(senior.log)")
    }
}
