import ArgumentParser

@main
struct Gavel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gavel",
        abstract: "Gavel: a real-time bidding and matching core for peer-to-peer marketplaces.",
        subcommands: [Simulate.self, Replay.self, Verify.self, Dump.self, Snapshot.self]
    )
}
