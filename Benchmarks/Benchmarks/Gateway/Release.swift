import GavelCore
@_spi(Manual) import GavelEngine
import GavelGateway
import NIOEmbedded

/// A writer driven by hand whose durable batches go to a fan-out, as in `gavel serve` without a journal: for the
/// allocations of the release path (apply, then route each batch: the listing's view, its event encoded once into
/// its frame, the frame kept in the listing's history).
final class ReleaseFixture: @unchecked Sendable {
    static let listings = 100
    let loop = EmbeddedEventLoop()
    let fanOut: FanOut
    let writer: Writer
    private var bids: [Int] = Array(repeating: 0, count: ReleaseFixture.listings)
    private var next = 0
    private var commands: [Command] = []

    init() {
        fanOut = FanOut(group: loop, historyLimit: 256, metrics: GatewayMetrics())
        var configuration = WriterConfiguration()
        configuration.engine.expectedRequestIDs = 2_000_000
        writer = Writer(configuration: configuration, clock: ManualClock(0), observer: fanOut)
        writer.startManual()
        for k in 0..<Self.listings {
            let open = Command(
                id: "o\(k)", listing: "L\(k)",
                body: .open(seller: "sam", terms: .english(.init(start: 100, closesAt: 4_000_000_000_000))))
            writer.submit(open, replyTo: nil)
        }
        writer.runUntilIdle()
    }

    /// Makes the next `count` bids: two bidders taking turns on each listing, each bid well above the last.
    func prepare(_ count: Int) {
        commands.removeAll(keepingCapacity: true)
        for _ in 0..<count {
            let listing = next % Self.listings
            next += 1
            bids[listing] += 1
            let n = bids[listing]
            commands.append(
                Command(
                    id: "b\(next)", listing: "L\(listing)",
                    body: .bid(bidder: n % 2 == 0 ? "ann" : "bob", amount: Money(20_000 * (n + 1)))))
        }
    }

    /// Whether every listing's view in the fan-out is at its last bid (one public event per bid after the open's):
    /// that the bids were routed, not only applied.
    func routedEveryBid() -> Bool {
        (0..<Self.listings).allSatisfy { fanOut.view(of: "L\($0)")?.seq == UInt64(1 + bids[$0]) }
    }

    /// Submits the prepared bids without waking the writer.
    func submit() -> Int {
        var refused = 0
        for index in commands.indices where writer.submit(commands[index], replyTo: nil, wake: false) != nil {
            refused += 1
        }
        return refused
    }
}
