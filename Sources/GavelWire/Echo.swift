/// How a message names a value the client sent (an unknown `type`, say): quoted, with its quotes and backslashes
/// escaped, and cut to ``limit`` characters, so that a refusal is not as long as what it refuses.
public enum Echo {
    /// The most characters of the value shown; a longer one ends with "…".
    public static let limit = 40

    public static func quoted(_ text: String) -> String {
        var shown = ""
        for (count, character) in text.enumerated() {
            guard count < limit else {
                shown += "…"
                break
            }
            if character == "\"" || character == "\\" { shown.append("\\") }
            shown.append(character)
        }
        return "\"" + shown + "\""
    }
}
