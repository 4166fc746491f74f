import GavelCore
@_spi(Manual) import GavelEngine
import Synchronization
import Testing

/// Keeps every released batch until the test gives it back, as an observer that routes on another thread does.
final class KeepingObserver: ReleaseObserver, ResultRecipient, Sendable {
    let kept = Mutex<[Batch]>([])

    var keepsBatches: Bool { true }

    func released(_ batch: Batch, endsGroup: Bool) {
        kept.withLock { $0.append(batch) }
    }

    /// The batches kept so far, taken out of the list.
    func take() -> [Batch] {
        kept.withLock { kept in
            defer { kept.removeAll() }
            return kept
        }
    }
}

/// A writer driven with `runUntilIdle()` whose batches a ``KeepingObserver`` keeps.
func manualWriterKeepingBatches() -> (KeepingObserver, Writer) {
    let observer = KeepingObserver()
    let writer = Writer(clock: ManualClock(0), observer: observer)
    writer.startManual()
    return (observer, writer)
}

/// An observer that keeps batches decides when the writer may reuse them.
@Suite struct KeptBatchTests {
    @Test func consumedEventsAreTheBatchsEventsMovedOutAndTheBatchHoldsNoneAfter() throws {
        let (observer, writer) = manualWriterKeepingBatches()
        writer.submit(
            Command(
                id: "o", listing: "L", body: .open(seller: "s", terms: .english(.init(start: 10, closesAt: 10_000)))),
            replyTo: nil)
        for n in 0..<6 {
            writer.submit(
                Command(id: "b\(n)", listing: "L", body: .bid(bidder: "bidder-\(n % 2)", amount: Money(100 + n * 100))),
                replyTo: nil)
        }
        writer.runUntilIdle()
        let batches = observer.take()
        let batch = try #require(batches.first)
        let expected = batch.events
        #expect(expected.count >= 7, "an open and six bids, some with an outbid notice")
        // Taken in order, as the fan-out takes them: the same events, values and strings alike.
        var seen: [Event] = []
        batch.consumeEvents { take in
            for index in expected.indices { seen.append(take(index)) }
        }
        #expect(seen == expected)
        #expect(batch.events.isEmpty)
        for kept in batches { kept.recycle() }
        writer.finishManual()
    }

    @Test func aKeptBatchIsNotReusedUntilItIsGivenBackAndThenIsReusedEmpty() {
        let (observer, writer) = manualWriterKeepingBatches()
        _ = writer.submit(openEnglish("L"), replyTo: observer)
        writer.runUntilIdle()
        let first = observer.take()
        #expect(first.count == 1)
        #expect(first.first?.entries.count == 1, "the kept batch still holds its entry")

        _ = writer.submit(bid("L", "ann", 100, id: "b1"), replyTo: observer)
        writer.runUntilIdle()
        let second = observer.take()
        #expect(second.count == 1)
        #expect(second.first !== first.first, "a batch not given back is not reused")
        #expect(first.first?.entries.first?.result != nil, "and still holds what it held")

        for batch in first { batch.recycle() }
        for batch in second { batch.recycle() }
        _ = writer.submit(bid("L", "bob", 300, id: "b2"), replyTo: observer)
        writer.runUntilIdle()
        let third = observer.take()
        #expect(third.count == 1)
        #expect(third.first === second.first || third.first === first.first, "a given-back batch is reused")
        #expect(third.first?.entries.count == 1, "holding only the new entry")
        #expect(third.first?.events.isEmpty == false)
        for batch in third { batch.recycle() }
    }

    @Test func awaitedResultsArriveWhileTheObserverStillKeepsTheBatch() async {
        let observer = KeepingObserver()
        let writer = Writer(clock: ManualClock(0), observer: observer)
        writer.start()
        let opened = await writer.submit(openEnglish("L"))
        let bidden = await writer.submit(bid("L", "ann", 100, id: "b1"))
        #expect(opened.result.ok && bidden.result.ok)
        #expect(bidden.lsn == 2)
        let kept = observer.take()
        #expect(kept.reduce(0) { $0 + $1.entries.count } == 2, "neither batch was given back or emptied")
        for batch in kept { batch.recycle() }
        await writer.shutdown()
    }
}

@Suite struct BatchEntrySizeTests {
    /// A batch entry is copied into the batch once per command: its result packed (``PackedResult``), not a whole
    /// ``CommandResult`` (an entry was 136 bytes with one, copied with `memcpy` calls).
    @Test func aBatchEntryHoldsItsResultPackedInAtMost64Bytes() {
        #expect(MemoryLayout<PackedResult>.size <= 17)
        #expect(MemoryLayout<BatchEntry>.stride <= 64, "\(MemoryLayout<BatchEntry>.stride) bytes")
    }
}
