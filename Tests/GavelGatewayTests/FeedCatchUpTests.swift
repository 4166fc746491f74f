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
            let rejected = FeedBatch.Entry.refusal(entry.rejected?.0, entry.rejected?.1)
            _ = encoder.encode(
                lsn: entry.lsn, at: entry.at, events: entry.events[...], rejected: rejected, filter: filter, into: &out)
        }
        return out
    }

    /// The bytes of the two-thread catch-up: the replaying thread's pieces (every event of each entry, cut every
    /// thousand or so), encoded with the subscription's filter by the encoding thread.
    static func encodedThroughPieces(_ entries: [Replayed], filter: FeedFilter) -> ByteBuffer {
        var pieces: [ReplayedPiece] = []
        var piece = ReplayedPiece(events: [], entries: [])
        for entry in entries {
            let first = piece.events.count
            piece.events += entry.events
            piece.entries.append(
                FeedBatch.Entry(
                    lsn: entry.lsn, at: entry.at, events: first..<piece.events.count,
                    rejected: FeedBatch.Entry.refusal(entry.rejected?.0, entry.rejected?.1)))
            if ReplayedPiece.isFull(events: piece.events.count, entries: piece.entries.count) {
                pieces.append(piece)
                piece = ReplayedPiece(events: [], entries: [])
            }
        }
        pieces.append(piece)
        #expect(pieces.count > 2)
        var encoder = FeedEncoder()
        var out = ByteBuffer()
        for piece in pieces {
            for entry in piece.entries {
                _ = encoder.encode(
                    lsn: entry.lsn, at: entry.at, events: piece.events[entry.events], rejected: entry.rejected,
                    filter: filter, into: &out)
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
        let refusal = FeedBatch.Refusal(
            command: Command(id: "b9", listing: "L1", body: .bid(bidder: "u2", amount: 200)),
            result: CommandResult.rejected(.listingClosed, "closed"))
        _ = encoder.encode(
            lsn: 7, at: 50, events: [closed][...], rejected: refusal, filter: FeedFilter(), into: &out)
        let text = String(decoding: out.readableBytesView, as: UTF8.self)
        #expect(text.contains(#""type":"closed""#))
        #expect(text.hasSuffix(#""lsn":7,"last":true}"#))
        #expect(!text.contains("rejected"))
    }

    @Test func theHandOffKeepsOrderAndHoldsAtMostItsCapacity() {
        let queue = CatchUpQueue()
        for n in 0..<CatchUpQueue.capacity {
            let entry = FeedBatch.Entry(lsn: UInt64(n), at: 0, events: 0..<0, rejected: nil)
            queue.put(.piece(ReplayedPiece(events: [], entries: [entry])))
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
