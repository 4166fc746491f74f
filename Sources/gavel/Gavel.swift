import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Gavel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gavel",
        abstract: "Gavel: a real-time bidding and matching core for peer-to-peer marketplaces.",
        subcommands: [
            Serve.self, Token.self, Send.self, Simulate.self, Replay.self, Verify.self, Dump.self, Snapshot.self,
        ]
    )

    /// ArgumentParser's own main, except that a secret given as an option is overwritten in the process's argument
    /// memory before anything else (the parser reads a copy of the arguments taken first), and an error ending
    /// `gavel serve --log-format json` is a JSON log line (level error) like the rest of its output, with the same
    /// exit status.
    static func main() async {
        do {
            let arguments = Array(CommandLine.arguments.dropFirst())
            scrubSecretArguments(secretOptions)
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            guard errorLinesAsJSON.load(ordering: .relaxed) else { exit(withError: error) }
            let message = fullMessage(for: error)
            if !message.isEmpty { printError(message, level: .error) }
            Glibc.exit(exitCode(for: error).rawValue)
        }
    }
}
