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

    /// A flag given on the command line, or its environment variable set to 1, true or yes.
    static func flag(_ option: Bool, _ name: String) -> Bool {
        if option { return true }
        guard let text = environment(name)?.lowercased() else { return false }
        return text == "1" || text == "true" || text == "yes"
    }
}
