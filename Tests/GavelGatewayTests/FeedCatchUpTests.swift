import Dispatch
import GavelCore
import NIOCore
import Testing

@testable import GavelGateway

/// A catch-up replays on one thread and encodes on another: what the replaying thread keeps of each entry, and the
/// hand-off between the two, must give the connection the bytes a one-thread catch-up gave it.
@Suite struct FeedCatchUpTests {
    /// One replayed entry: its lsn, time, events and (for a refused command) the command and its result.
    struct Replayed {
        var lsn: UInt64
        var at: Millis
        var events: [Event]
        var rejected: (Command, CommandResult)?
    }

    static func randomEntries(count: Int, seed: UInt64) -> [Replayed] {
        var random = SplitMix(seed: seed)
        var entries: [Replayed] = []
        for n in 0..<count {
            let lsn = UInt64(n + 1)
            let at = Millis(1_000 + n)
            var events: [Event] = []
            for k in 0..<Int(random.next() % 5) {
                let listing = "L\(random.next() % 4)"
                let kind: EventKind
                switch random.next() % 4 {
                case 0:
                    kind = .bidPlaced(price: 100 + Money(k), leader: "u1", bids: 1, closesAt: 9_000, reserveMet: true)
                case 1: kind = .outbid(bidder: "u2", price: 100)
                case 2: kind = .evicted
                default: kind = .extended(closesAt: 10_000)
                }
                events.append(Event(listing: listing, seq: UInt64(k), at: at, kind: kind))
            }
            var rejected: (Command, CommandResult)?
            if random.next() % 3 == 0 {
                let command = Command(
                    id: "b\(n)", listing: "L\(random.next() % 4)", body: .bid(bidder: "u3", amount: 5))
                var result = CommandResult.rejected(.bidTooLow, "too low")
                result.duplicate = random.next() % 4 == 0
                rejected = (command, random.next() % 5 == 0 ? .accepted : result)
            }
            entries.append(Replayed(lsn: lsn, at: at, events: events, rejected: rejected))
        }
        return entries
    }

    /// The bytes the one-thread catch-up wrote: every entry encoded with the subscription's own filter.
    static func encodedDirectly(_ entries: [Replayed], filter: FeedFilter) -> ByteBuffer {
        var encoder = FeedEncoder()
        var out = ByteBuffer()
        for entry in entries {
            var rejected: (Command, CommandResult)?
            if let (command, result) = entry.rejected, !result.ok, !result.duplicate { rejected = (command, result) }
            _ = encoder.encode(
                lsn: entry.lsn, at: entry.at, events: entry.events[...], rejected: rejected, filter: filter, into: &out)
        }
        return out
    }

    /// The bytes of the two-thread catch-up: pieces kept by the replaying thread, encoded as they are.
    static func encodedThroughPieces(_ entries: [Replayed], filter: FeedFilter) -> ByteBuffer {
        var pieces: [ReplayedPiece] = []
        var piece = ReplayedPiece()
        for entry in entries {
            piece.append(
                lsn: entry.lsn, at: entry.at, command: entry.rejected?.0, result: entry.rejected?.1,
                events: entry.events, filter: filter)
            if piece.isFull { pieces.append(piece.take()) }
        }
        pieces.append(piece.take())
        var encoder = FeedEncoder()
        var out = ByteBuffer()
        for piece in pieces {
            for entry in piece.entries {
                _ = encoder.encode(
                    lsn: entry.lsn, at: entry.at, events: piece.events[entry.events], rejected: entry.rejected,
                    filter: .chosenAlready, into: &out)
            }
        }
        return out
    }

    @Test(arguments: [
        FeedFilter(),
        FeedFilter(types: ["bid_placed"], listings: nil, includeRejections: false),
        FeedFilter(types: nil, listings: ["L1", "L2"], includeRejections: true),
        FeedFilter(types: ["outbid", "extended"], listings: ["L0"], includeRejections: true),
    ])
    func piecesEncodeToTheBytesOfAOneThreadCatchUpWhateverTheFilter(filter: FeedFilter) {
        for seed in UInt64(1)...4 {
            let entries = Self.randomEntries(count: 2_000, seed: seed)
            let direct = Self.encodedDirectly(entries, filter: filter)
            let piped = Self.encodedThroughPieces(entries, filter: filter)
            #expect(direct.readableBytes > 0)
            let a = Array(direct.readableBytesView)
            let b = Array(piped.readableBytesView)
            let first = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
            #expect(
                direct == piped,
                "seed \(seed): first difference at byte \(first) of \(a.count) and \(b.count): \(String(decoding: a[max(0, first - 80)..<min(a.count, first + 40)], as: UTF8.self)) | \(String(decoding: b[max(0, first - 80)..<min(b.count, first + 40)], as: UTF8.self))"
            )
        }
    }

    @Test func anEntryWhoseRefusalTheFilterLeavesOutStillEndsWithLastTrue() {
        // A clock move that fired a close, then a bid refused on the closed listing: one entry, one event and a
        // refusal. A feed without include_rejections must still see the entry's last message say so.
        var encoder = FeedEncoder()
        var out = ByteBuffer()
        let closed = Event(listing: "L1", seq: 3, at: 50, kind: .closed(winner: "u1", price: 100, reserveMet: true))
        let refusal = (
            Command(id: "b9", listing: "L1", body: .bid(bidder: "u2", amount: 200)),
            CommandResult.rejected(.listingClosed, "closed")
        )
        _ = encoder.encode(
            lsn: 7, at: 50, events: [closed][...], rejected: refusal, filter: FeedFilter(), into: &out)
        let text = String(decoding: out.readableBytesView, as: UTF8.self)
        #expect(text.contains(#""type":"closed""#))
        #expect(text.hasSuffix(#""lsn":7,"last":true}"#))
        #expect(!text.contains("rejected"))
    }

    @Test func aPieceKeepsOnlyWantedEventsAndRefusalsAndLeavesOutEntriesWithNothingWanted() {
        let filter = FeedFilter(types: nil, listings: ["L1"], includeRejections: true)
        var piece = ReplayedPiece()
        let bid = EventKind.bidPlaced(price: 100, leader: "u1", bids: 1, closesAt: 9_000, reserveMet: false)
        piece.append(
            lsn: 1, at: 10, command: nil, result: nil,
            events: [
                Event(listing: "L1", seq: 1, at: 10, kind: bid), Event(listing: "L2", seq: 1, at: 10, kind: bid),
                Event(listing: "L1", seq: 0, at: 10, kind: .evicted),
            ], filter: filter)
        piece.append(
            lsn: 2, at: 11, command: nil, result: nil, events: [Event(listing: "L2", seq: 2, at: 11, kind: bid)],
            filter: filter)
        let refused = CommandResult.rejected(.bidTooLow, "too low")
        piece.append(
            lsn: 3, at: 12, command: Command(id: "b3", listing: "L1", body: .bid(bidder: "u2", amount: 1)),
            result: refused, events: [], filter: filter)
        piece.append(
            lsn: 4, at: 13, command: Command(id: "b4", listing: "L2", body: .bid(bidder: "u2", amount: 1)),
            result: refused, events: [], filter: filter)
        var repeated = refused
        repeated.duplicate = true
        piece.append(
            lsn: 5, at: 14, command: Command(id: "b3", listing: "L1", body: .bid(bidder: "u2", amount: 1)),
            result: repeated, events: [], filter: filter)
        #expect(piece.entries.map(\.lsn) == [1, 3])
        #expect(piece.events.map(\.listing) == ["L1"])
        #expect(piece.entries[0].events == 0..<1)
        #expect(piece.entries[0].rejected == nil)
        #expect(piece.entries[1].events == 1..<1)
        #expect(piece.entries[1].rejected?.0.id == "b3")
    }

    @Test func theHandOffKeepsOrderAndHoldsAtMostItsCapacity() {
        let queue = CatchUpQueue()
        for n in 0..<CatchUpQueue.capacity {
            var piece = ReplayedPiece()
            piece.entries.append(FeedBatch.Entry(lsn: UInt64(n), at: 0, events: 0..<0, rejected: nil))
            queue.put(.piece(piece))
        }
        let putReturned = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            queue.put(.end)
            putReturned.signal()
        }
        #expect(putReturned.wait(timeout: .now() + .milliseconds(200)) == .timedOut, "a put past capacity waits")
        var taken: [UInt64] = []
        for _ in 0..<CatchUpQueue.capacity {
            if case .piece(let piece) = queue.take() { taken += piece.entries.map(\.lsn) }
        }
        #expect(putReturned.wait(timeout: .now() + .seconds(10)) == .success, "a take frees a place")
        #expect(taken == Array(0..<UInt64(CatchUpQueue.capacity)))
        guard case .end = queue.take() else {
            Issue.record("the last step put is the last taken")
            return
        }
    }
}
