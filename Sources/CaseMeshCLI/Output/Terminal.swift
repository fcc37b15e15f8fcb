/// What may be printed to a terminal.
enum Terminal {
    /// The text with every control character but newline and tab replaced by U+FFFD.
    ///
    /// Texts printed here can come from other nodes (an access-log entry's actor, a
    /// case's fields, a peer's reason): an escape sequence in one would otherwise run
    /// on the reader's terminal (retitle it, clear it, rewrite what it shows).
    static func safe(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isUnsafe) else { return text }
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            scalars.append(isUnsafe(scalar) ? "\u{FFFD}" : scalar)
        }
        return String(scalars)
    }

    private static func isUnsafe(_ scalar: Unicode.Scalar) -> Bool {
        scalar != "\n" && scalar != "\t" && scalar.properties.generalCategory == .control
    }
}
