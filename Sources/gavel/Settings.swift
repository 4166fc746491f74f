import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// Resolves a setting from its command-line option, then its environment variable, then its default.
enum Setting {
    /// The environment variable `name`, when set and not empty.
    static func environment(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        let value = String(cString: raw)
        return value.isEmpty ? nil : value
    }

    /// `option` when given, else the environment variable `name` parsed as `T`, else `fallback`.
    ///
    /// - Throws: `ValidationError` when the variable is set but does not parse.
    static func value<T: LosslessStringConvertible>(_ option: T?, _ name: String, default fallback: T) throws -> T {
        if let option { return option }
        guard let text = environment(name) else { return fallback }
        guard let value = T(text) else { throw ValidationError("\(name)=\(text) is not a valid value") }
        return value
    }

    /// A flag given on the command line, or its environment variable set to 1, true, yes or on (any case); 0,
    /// false, no or off (or unset, or empty) leave it off.
    ///
    /// - Throws: `ValidationError` for any other value: a typo must not silently leave a protection off.
    static func flag(_ option: Bool, _ name: String) throws -> Bool {
        if option { return true }
        guard let text = environment(name) else { return false }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default:
            throw ValidationError(
                "\(name)=\(text) is not a valid value: use 1, true, yes or on to turn it on (0, false, no or off, or "
                    + "unset, to leave it off)")
        }
    }
}
