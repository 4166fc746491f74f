import Dispatch
import GavelCore
import GavelEngine
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Decodes a segment's batches on a thread of its own, ahead of the thread that applies them: decompressing,
/// decoding the records and checking the chain was about a quarter of a replay and each command's ``CommandDigest``
/// (its hashes, fingerprint and identifier checks) another seventh, and this way they run beside the engine's apply
/// on a second core.
///
/// It hands out what ``SegmentReader/next()`` returns, in the same order, and stops reading at the first `nil` or
/// problem: after either, ``finish()`` gives back the reader as the segment's reading left it (its `nextLSN` and
/// `chain`). The segment's bytes are already in memory, so reading a few batches ahead of a consumer that stops
/// early (`--to-lsn`) reads no file further.
///
/// Each batch is decoded exactly once, by one of the two threads. A batch can only be decoded once the one before it
/// is (its frame starts where that one ends, and its chain continues that one's), so the two threads take turns on
/// one thing: the batch after the last one handed over, which a thread *claims* before decoding it. The reading
/// thread claims it whenever it is unclaimed and fewer than ``capacity`` batches wait to be taken. The applying
/// thread, with nothing decoded to take, claims it itself if it is unclaimed, and waits for the reading thread only
/// when that one is decoding it already. A reading thread that finds the applying thread had to decode batches
/// itself (most likely the scheduler ran something else on the other core) steps aside for a while, longer each
/// time, so that the applying thread is seldom left waiting for a thread the scheduler does not run. Decoded batches
/// are taken all at once: a journal's batches are small (about 60 entries in a busy one), and a wake-up per batch
/// cost more than it moved.
///
/// A process allowed on one CPU only (`taskset -c 0`) starts no reading thread: the two threads would take turns on
/// that CPU, and the hand-over cost more than a tenth of the replay's time with nothing to gain. The applying
/// thread then decodes every batch itself, as ``SegmentReader/next()`` does.
final class SegmentReadAhead: @unchecked Sendable {
    /// A batch, and the ``CommandDigest`` of each record in it that is a command applied (whose outcome is
    /// ``RequestOutcome/applied`` or unknown), `nil` for the others, with the ``ListingHandle/hash(of:)`` of each
    /// command's listing id (0 for the others), whichever thread decoded the batch.
    typealias Batch = (batch: SegmentBatch, digests: [CommandDigest?], listingHashes: [UInt64])
    fileprivate typealias Item = Result<Batch?, SegmentProblem>

    /// The batches decoded and not yet taken, at most.
    static let capacity = 32

    /// Whether this process may run on more than one CPU, so that a reading thread can run beside the applying one.
    static let severalCPUs = (allowedCPUCount() ?? 2) > 1

    /// How many batches (and ends) each thread decoded: each one once, by one of them.
    struct Decodes: Equatable, Sendable {
        var byReader = 0
        var byApplier = 0
        var total: Int { byReader + byApplier }
    }

    /// Where the reading thread stands, for tests that stall it: about to claim the next batch, or holding the claim
    /// of the batch numbered `batch` (from 0) before decoding it.
    enum ReaderStep: Equatable, Sendable {
        case beforeClaiming
        case claimed(batch: Int)
    }

    /// Where the reading of the segment stands: the reader after the last batch handed over (to ``Shared/decoded``
    /// or to the applying thread directly), and how many batches (and ends) have been handed over.
    ///
    /// `@unchecked Sendable`: each thread reads from a copy with an LZ4 context of its own
    /// (``SegmentReader/using(_:)``); the one kept here is only copied and replaced, under the mutex.
    fileprivate struct Position: @unchecked Sendable {
        var reader: SegmentReader
        var handedOver = 0
    }

    fileprivate struct Shared {
        var position: Position
        /// Whether a thread is decoding the batch after ``position``.
        var claimed = false
        var decoded: [Item] = []
        /// Whether the segment's end or a problem has been handed over: nothing more is read.
        var ended = false
        var readerWaits = false
        var applierWaits = false
        var stopping = false
        var decodes = Decodes()
    }

    /// What a thread does next: decode the batch after `position`, wait (the reading thread for room, the applying
    /// one for the batch the reading one is decoding), step aside, take what is decoded, or stop.
    private enum Step {
        case decode(Position)
        case wait
        case stepAside
        case take
        case stop
    }

    private let shared: Mutex<Shared>
    private let wakeReader = DispatchSemaphore(value: 0)
    private let wakeApplier = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    /// The batches taken and not yet handed out, and the next one's position: the applying thread's own.
    private var taken: [Item] = []
    private var position = 0
    /// The applying thread's LZ4 context, for the batches it decodes itself.
    private let applierDecoder = LZ4Frame.Decoder()
    /// And its names (``SegmentReader/interning(_:)``).
    private let applierIdentifiers = IdentifierCache(slotCount: SegmentReadAhead.identifierSlots)
    /// The digests and listing hashes of the batches the applying thread decodes itself, their storage reused from
    /// one to the next (the batch before is let go of by then).
    private var applierDigests: [CommandDigest?] = []
    private var applierListingHashes: [UInt64] = []
    private var finished = false

    /// The slots of each thread's ``IdentifierCache``: a read-ahead reads one segment, whose records name the
    /// listings and users of one stretch of commands, and recovery makes one for each segment.
    static let identifierSlots = 512

    /// The last lsn whose record is only read past, not applied (a snapshot's, when recovery starts from one): its
    /// command's digest and listing hash are not computed (`nil` and 0).
    private let appliedAfter: UInt64

    /// Starts reading `reader`'s batches from where it stands, on a thread of its own if `readingThread`.
    /// The records up to lsn `appliedAfter` are only read past (checked, not applied): the reading thread computes
    /// no digest for them. `observe`, for tests, is called by the reading thread at each ``ReaderStep`` (it may
    /// stall there).
    init(
        _ reader: SegmentReader, appliedAfter: UInt64 = 0, readingThread: Bool = severalCPUs,
        observe: (@Sendable (ReaderStep) -> Void)? = nil
    ) {
        self.appliedAfter = appliedAfter
        shared = Mutex(Shared(position: Position(reader: reader)))
        guard readingThread else {
            done.signal()
            return
        }
        taken.reserveCapacity(Self.capacity)
        let thread = startDedicatedThread("replay read-ahead") { [self] in
            read(with: LZ4Frame.Decoder(), observe: observe)
            done.signal()
        }
        pthread_detach(thread)
    }

    /// The reading thread: claims the batch after the last one handed over, decodes it and hands it over.
    private func read(with decoder: LZ4Frame.Decoder?, observe: (@Sendable (ReaderStep) -> Void)?) {
        // Microseconds to sleep after finding that the applying thread decoded batches itself.
        var backOff: UInt32 = 0
        let identifiers = IdentifierCache(slotCount: Self.identifierSlots)
        var applierDecodesSeen = 0
        var steppedAside = false
        while true {
            observe?(.beforeClaiming)
            let step = shared.withLock { shared -> Step in
                if shared.stopping || shared.ended { return .stop }
                // The applying thread ran out of decoded batches and decoded some itself (or is decoding one): this
                // thread is not keeping up, most likely because the scheduler runs something else on the other
                // core. It steps aside, longer each time, rather than claim batches the applying thread would
                // then wait for; back from a step aside, it claims the next batch whatever was decoded meanwhile.
                let applierDecoded = shared.decodes.byApplier != applierDecodesSeen
                applierDecodesSeen = shared.decodes.byApplier
                if shared.claimed || (applierDecoded && !steppedAside) { return .stepAside }
                shared.readerWaits = shared.decoded.count >= Self.capacity
                if shared.readerWaits { return .wait }
                // Batches not taken yet: this thread is ahead of the applying one.
                if !shared.decoded.isEmpty { backOff = 0 }
                shared.claimed = true
                return .decode(shared.position)
            }
            steppedAside = false
            switch step {
            case .stop: return
            case .wait: wakeReader.wait()
            case .stepAside:
                backOff = min(max(2 * backOff, 250), 16_000)
                usleep(backOff)
                steppedAside = true
            case .take: preconditionFailure("the reading thread takes no batches")
            case .decode(let from):
                observe?(.claimed(batch: from.handedOver))
                var reader = from.reader.using(decoder, identifiers: identifiers)
                let item = Self.decode(&reader, digestsAfter: appliedAfter)
                let wake = shared.withLock { shared in
                    shared.decodes.byReader += 1
                    shared.handOver(item, after: from.handedOver, Position(reader: reader))
                    shared.decoded.append(item)
                    defer { shared.applierWaits = false }
                    return shared.applierWaits
                }
                if wake { wakeApplier.signal() }
            }
        }
    }

    /// The next batch of `reader`, with the digests and listing hashes of the records after lsn `digestsAfter`,
    /// written into `digests` and `listingHashes` (which the batch handed out then shares).
    private static func decode(
        _ reader: inout SegmentReader, digestsAfter: UInt64, into digests: inout [CommandDigest?],
        _ listingHashes: inout [UInt64]
    ) -> Item {
        Result { () throws(SegmentProblem) -> Batch? in
            guard let batch = try reader.next() else { return nil }
            digestsAndListingHashes(of: batch, after: digestsAfter, into: &digests, &listingHashes)
            return (batch, digests, listingHashes)
        }
    }

    /// The next batch of `reader`, with the digests and listing hashes of the records after lsn `digestsAfter` in
    /// arrays of its own (the reading thread's: the batches it hands over wait together).
    private static func decode(_ reader: inout SegmentReader, digestsAfter: UInt64) -> Item {
        var digests: [CommandDigest?] = []
        var listingHashes: [UInt64] = []
        return decode(&reader, digestsAfter: digestsAfter, into: &digests, &listingHashes)
    }

    /// Each record's ``CommandDigest`` and listing hash after lsn `lsn`, as ``Batch`` holds them, into arrays a
    /// caller may keep from one batch to the next (emptied first, their storage kept: no allocation per batch once
    /// they are large enough). One pass over the records that reads each in place (`switch` borrows what its cases
    /// bind, where a `map` over the records copied each one, its command's strings and enum, and destroyed the copy
    /// again).
    static func digestsAndListingHashes(
        of batch: SegmentBatch, after lsn: UInt64, into digests: inout [CommandDigest?], _ listingHashes: inout [UInt64]
    ) {
        digests.removeAll(keepingCapacity: true)
        listingHashes.removeAll(keepingCapacity: true)
        digests.reserveCapacity(batch.records.count)
        listingHashes.reserveCapacity(batch.records.count)
        for index in batch.records.indices {
            switch batch.records[index] {
            case .command(let commandLSN, _, _, let command, let outcome) where commandLSN > lsn:
                // A digest holds the listing's hash (the same function): the id is hashed once.
                let digest = outcome ?? .applied == .applied ? CommandDigest(command) : nil
                digests.append(digest)
                listingHashes.append(digest?.listingHash ?? ListingHandle.hash(of: command.listing))
            case .command, .tick, .trailer:
                digests.append(nil)
                listingHashes.append(0)
            }
        }
    }

    /// The next batch, `nil` at the end of the segment, as ``SegmentReader/next()``; not to be called again after
    /// either `nil` or a problem.
    func next() throws(SegmentProblem) -> Batch? {
        while position == taken.count {
            taken.removeAll(keepingCapacity: true)
            position = 0
            let (step, wake) = shared.withLock { shared -> (Step, Bool) in
                if !shared.decoded.isEmpty {
                    swap(&shared.decoded, &taken)
                    return (.take, shared.takeReaderWaits())
                }
                if shared.claimed {
                    shared.applierWaits = true
                    return (.wait, false)
                }
                shared.claimed = true
                return (.decode(shared.position), false)
            }
            if wake { wakeReader.signal() }
            switch step {
            case .take, .stop, .stepAside: continue
            case .wait:
                // The reading thread is decoding the batch wanted: it hands it over and wakes this thread.
                wakeApplier.wait()
            case .decode(let from):
                // Nothing decoded and nothing being decoded: this thread decodes the next batch itself, with its
                // digests and listing hashes, which the apply would compute anyway and which let it look listings up
                // by hash and load them a few commands ahead (with no reading thread, every batch comes this way).
                var reader = from.reader.using(applierDecoder, identifiers: applierIdentifiers)
                let item = Self.decode(
                    &reader, digestsAfter: appliedAfter, into: &applierDigests, &applierListingHashes)
                shared.withLock { shared in
                    shared.decodes.byApplier += 1
                    shared.handOver(item, after: from.handedOver, Position(reader: reader))
                }
                return try item.get()
            }
        }
        position += 1
        return try taken[position - 1].get()
    }

    /// How many batches each thread has decoded so far.
    var decodes: Decodes { shared.withLock { $0.decodes } }

    /// Stops the reading thread (at once if it is waiting for room, else once its batch is decoded or its step
    /// aside is over) and returns the reader as the batches handed over left it. To be called once the batches
    /// wanted are handed out: the thread runs until then.
    @discardableResult
    func finish() -> SegmentReader {
        if !finished {
            finished = true
            let wake = shared.withLock { shared in
                shared.stopping = true
                return shared.takeReaderWaits()
            }
            if wake { wakeReader.signal() }
            done.wait()
            taken = []
        }
        return shared.withLock { $0.position }.reader
    }
}

extension SegmentReadAhead.Shared {
    /// Hands `item`, the batch decoded after `count` batches by the thread that claimed it, over with the reader as
    /// it left it, and releases the claim.
    fileprivate mutating func handOver(
        _ item: SegmentReadAhead.Item, after count: Int, _ after: SegmentReadAhead.Position
    ) {
        precondition(claimed && position.handedOver == count, "a batch handed over that was not claimed")
        position = after
        position.handedOver = count + 1
        claimed = false
        if (try? item.get()) == nil { ended = true }
    }

    /// Whether the reading thread waits for room; it no longer does once told (by a signal of `wakeReader`).
    fileprivate mutating func takeReaderWaits() -> Bool {
        defer { readerWaits = false }
        return readerWaits
    }
}
