import ArgumentParser

@main
struct Gavel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gavel",
        abstract: "Gavel: a real-time bidding and matching core for peer-to-peer marketplaces.",
        subcommands: [
            Serve.self, Token.self, Send.self, Simulate.self, Replay.self, Verify.self, Dump.self, Snapshot.self,
        ]
    )
}
