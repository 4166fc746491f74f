import CAllocationCounter
import GavelCore
import NIOCore
import Testing

@testable import GavelGateway
@testable import GavelWire

// The heap allocations of the codec's hot paths, counted exactly on the calling thread (`CAllocationCounter`), on
// the calls the gateway makes: a bid or order frame read from the received buffer and admitted as a `Command`
// (`WebSocketSession.handleMessage`), a result written into the session's kept buffer (`sendResult`) and an event
// into the fan-out's (`FanOut.route`). Counts, not times: a count is exact on any machine.

/// Allocations made by `body` on this thread.
private func allocations(_ body: () -> Void) -> Int {
    gavel_allocation_counting_start()
    body()
    return gavel_allocation_counting_stop()
}

private let counting = gavel_allocation_counting_available() != 0

/// Decodes `frames` as the session does (fast path with its loop's `identifiers`, then the connection's admission)
/// and returns the commands.
private func admitted(
    _ frames: [ByteBuffer], as admission: CommandAdmission, identifiers: IdentifierCache? = nil,
    into commands: inout [Command]
) {
    // By index: a debug build's `for-in` over an array allocates once per element.
    for index in frames.indices {
        guard
            let frame = frames[index].withUnsafeReadableBytes({
                FastCommandDecoder.decode($0, identifiers: identifiers)
            }),
            admission.takesFastPath(frame),
            case .submit(let command) = admission.admit(frame)
        else { continue }
        commands.append(command)
    }
}

private func bidFrames(
    _ count: Int, id: (Int) -> String = { "b\($0)" }, listing: (Int) -> String = { "L\($0)" }, bidder: String = "ann"
) -> [ByteBuffer] {
    (0..<count).map { k in
        ByteBuffer(
            string:
                #"{"type":"bid","id":"\#(id(k))","listing":"\#(listing(k))","bidder":"\#(bidder)","amount":\#(1_000 + k)}"#
        )
    }
}

private func orderFrames(_ count: Int) -> [ByteBuffer] {
    (0..<count).map { k in
        ByteBuffer(
            string:
                #"{"type":"order","id":"o\#(k)","listing":"M1","side":"\#(k % 2 == 0 ? "buy" : "sell")","price":\#(500 + k),"quantity":\#(1 + k % 10),"tif":"ioc","on_behalf_of":"trader-\#(k % 7)"}"#
        )
    }
}

@Suite(.enabled(if: counting, "allocations are counted on Linux with glibc only"))
struct CodecAllocationTests {
    /// The counter sees an allocation where there is one, so the zero counts below can fail.
    @Test func theCounterCountsAnAllocation() {
        var kept: [[UInt8]] = []
        let count = allocations { kept.append([UInt8](repeating: 1, count: 100)) }
        #expect(count >= 1)
        #expect(kept.count == 1)
    }

    /// The commands `frames` are admitted as from a connection of `principal`, and the allocations that took (after
    /// one frame to warm up).
    private func admittedCounting(
        _ frames: [ByteBuffer], from principal: Principal, identifiers: IdentifierCache? = nil,
        warmUp: Int = 1
    ) -> ([Command], Int) {
        let admission = CommandAdmission(principal: principal)
        var commands: [Command] = []
        commands.reserveCapacity(frames.count)
        admitted(Array(frames.prefix(warmUp)), as: admission, identifiers: identifiers, into: &commands)
        commands.removeAll(keepingCapacity: true)
        let count = allocations { admitted(frames, as: admission, identifiers: identifiers, into: &commands) }
        return (commands, count)
    }

    @Test func aBidFrameIsDecodedAndAdmittedAsACommandWithNoAllocation() {
        let (commands, count) = admittedCounting(bidFrames(1_000), from: Principal(name: "ann", role: .bidder))
        #expect(commands.count == 1_000)
        #expect(commands[7] == Command(id: "b7", listing: "L7", body: .bid(bidder: "ann", amount: 1_007)))
        #expect(count == 0)
    }

    @Test func anOrderFrameOnBehalfOfAUserIsDecodedAndAdmittedWithNoAllocation() {
        let (commands, count) = admittedCounting(orderFrames(1_000), from: Principal(name: "svc", role: .service))
        #expect(commands.count == 1_000)
        #expect(
            commands[3]
                == Command(
                    id: "o3", listing: "M1",
                    body: .order(trader: "trader-3", side: .sell, price: 503, quantity: 4, tif: .ioc, expiresAt: nil)))
        #expect(count == 0)
    }

    /// An identifier of 16 to 64 bytes is not a small string: its `String` is one allocation, and nothing else is.
    @Test func anIdentifierLongerThanFifteenBytesCostsOneAllocation() {
        for length in [15, 16, 40, 64] {
            let frames = bidFrames(100) { k in String(repeating: "r", count: length - 4) + String(1_000 + k) }
            let (commands, count) = admittedCounting(frames, from: Principal(name: "ann", role: .bidder))
            #expect(commands.count == 100)
            #expect(commands.allSatisfy { $0.id.utf8.count == length })
            #expect(count == (length > 15 ? 100 : 0), "ids of \(length) bytes")
        }
    }

    /// Listing and user names of 16 to 64 bytes (UUID-like, as marketplaces have) decoded with the loop's
    /// ``IdentifierCache``: once each listing has been seen, a bid costs one allocation (its request id, new each
    /// time) where it cost three, and the names are the ones sent.
    @Test func longListingAndUserNamesSeenBeforeCostNoAllocation() {
        let listings = (0..<8).map { "listing-4f1c2b9e-8d7a-4c31-9b0e-2f6a5d3c1e\($0)" }
        let bidder = "bidder-0b7c9e2a-5d41-4f8e-a6c3-1e9d7b2f4a60"
        let frames = bidFrames(
            400, id: { "request-0123456789-\($0)" }, listing: { listings[$0 % listings.count] }, bidder: bidder)
        let principal = Principal(name: bidder, role: .bidder)
        let (cached, withCache) = admittedCounting(
            frames, from: principal, identifiers: IdentifierCache(), warmUp: listings.count)
        let (plain, without) = admittedCounting(frames, from: principal)
        #expect(cached == plain && cached.count == 400)
        #expect(
            cached[9]
                == Command(id: "request-0123456789-9", listing: listings[1], body: .bid(bidder: bidder, amount: 1_009)))
        #expect(withCache == 400)
        #expect(without == 1_200)
    }

    /// A bid naming the connection's own user (as every bid from a bidder's app does) gets that user's `String`
    /// itself, with no cache and no allocation; another name of the same length does not.
    @Test func anActorSpelledAsTheConnectionsUserIsThatUsersString() {
        let user = "bidder-0b7c9e2a-5d41-4f8e-a6c3-1e9d7b2f4a60"
        let other = "bidder-0b7c9e2a-5d41-4f8e-a6c3-1e9d7b2f4a61"
        let bits = { (s: String) in unsafeBitCast(s, to: (UInt64, UInt64).self) }
        for (bidder, shared) in [(user, true), (other, false)] {
            let frame = bidFrames(1, bidder: bidder)[0]
            var decoded: FastCommand?
            let count = allocations {
                decoded = frame.withUnsafeReadableBytes { FastCommandDecoder.decode($0, user: user) }
            }
            #expect(decoded?.actor == bidder)
            #expect((decoded.map { bits($0.actor!) == bits(user) } ?? false) == shared)
            #expect(count == (shared ? 0 : 1), "\(bidder)")
        }
    }

    @Test func aBidPlacedEventIsEncodedIntoAKeptBufferWithNoAllocation() {
        let events = (0..<1_000).map { (k: Int) -> Event in
            let kind = EventKind.bidPlaced(
                price: Money(1_050 + k), leader: "bidder-" + String(k % 7), bids: Int64(k + 2),
                closesAt: Millis(1_000_000_000_000), reserveMet: true)
            return Event(listing: "L" + String(k), seq: UInt64(k + 2), at: Millis(k), kind: kind)
        }
        var buffer: [UInt8] = []
        var total = 0
        let encode = {
            for index in events.indices {
                MessageEncoder.event(events[index], ts: 1_795_000_000_000, into: &buffer)
                total += buffer.count
            }
        }
        encode()
        let count = allocations(encode)
        #expect(count == 0)
        #expect(total > 200_000)
        #expect(buffer == MessageEncoder.event(events[999], ts: 1_795_000_000_000))
    }

    @Test func aResultIsEncodedIntoAKeptBufferWithNoAllocation() {
        let results = (0..<1_000).map { (k: Int) -> (id: String, result: CommandResult) in
            let result = CommandResult(error: nil, message: "", price: Money(1_050 + k), leading: k % 3 != 0)
            return (id: "b" + String(k), result: result)
        }
        let rejected = CommandResult.rejected(.bidTooLow, "bid 5 is below the minimum 1,050")
        var buffer: [UInt8] = []
        let encode = {
            for index in results.indices {
                let (id, result) = results[index]
                MessageEncoder.result(id: id, result, ts: 1_795_000_000_000, into: &buffer)
                MessageEncoder.result(id: id, rejected, ts: 1_795_000_000_000, into: &buffer)
            }
        }
        encode()
        let count = allocations(encode)
        #expect(count == 0)
        #expect(buffer == MessageEncoder.result(id: "b999", rejected, ts: 1_795_000_000_000))
    }

    /// A connection's results go into its own outbound buffer, whose storage it writes into again after each flush
    /// (once the channel let go of it): no buffer per result.
    @Test func resultsForAConnectionGoIntoItsOwnBufferWithNoAllocationOnceWarm() throws {
        let h = try SessionHarness(principal: Principal(name: "ann", role: .bidder))
        let session = try h.channel.pipeline.syncOperations.handler(type: WebSocketSession.self)
        // 30 results: within the 4 KiB the session keeps between flushes.
        let ids = (0..<30).map { "b" + String($0) }
        let result = CommandResult(error: nil, message: "", price: 1_050, leading: true)
        let round = {
            for index in ids.indices { session.sendResult(id: ids[index], result) }
        }
        round()
        session.flushIfNeeded()
        #expect(try h.frames().filter { $0.type == "result" }.count == 30)
        let count = allocations(round)
        #expect(count == 0)
        session.flushIfNeeded()
        let frames = try h.frames()
        #expect(frames.map { $0.json?["id"] } == ids.map { .string($0) })
    }

    /// A read's frames are read as slices of it and each masked text frame is unmasked into the connection's kept
    /// buffer: no frame object, no copy of the read (unmasking in place would copy the slice).
    @Test func aReadsMaskedTextFramesAreReadAndUnmaskedWithNoAllocationOnceWarm() {
        let texts = (0..<100).map { #"{"type":"bid","id":"b\#($0)","listing":"L","amount":\#(1_000 + $0)}"# }
        var read = ByteBuffer()
        for text in texts {
            var bytes = clientBytes(clientFrame(.text, text))
            read.writeBuffer(&bytes)
        }
        let reader = FrameReader(maxFrameSize: 64 * 1024)
        var machine = SessionStateMachine(maxMessageBytes: 64 * 1024)
        var received: [String] = []
        received.reserveCapacity(texts.count)
        var total = 0
        let round = {
            var bytes = read
            while case .frame(let frame) = reader.next(&bytes) {
                guard case .message(let payload) = machine.frameReceived(frame) else { continue }
                total += payload.readableBytes
            }
        }
        round()
        let count = allocations(round)
        #expect(count == 0)
        #expect(total == 2 * texts.reduce(0) { $0 + $1.utf8.count })
        var bytes = read
        while case .frame(let frame) = reader.next(&bytes) {
            guard case .message(let payload) = machine.frameReceived(frame) else { continue }
            received.append(String(buffer: payload))
        }
        #expect(received == texts)
    }
}
