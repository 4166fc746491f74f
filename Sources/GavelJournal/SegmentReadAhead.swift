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
/// The applying thread never waits for the reading one: when no batch is decoded yet it decodes the next one
/// itself, from the reader as the last batch handed over left it, and whichever of the two threads finishes that
/// batch first hands it over (the other's copy is dropped; a reading thread whose copy was dropped sleeps a while, so that
/// it does not go on doing the same work twice). On a machine whose other core was busy, a replay that
/// waited for a reading thread the scheduler had not run yet was slower than one thread alone. Decoded batches are
/// taken all at once, and the reading thread sleeps once ``capacity`` of them are not taken: a journal's batches
/// are small (about 60 entries in a busy one), and a wake-up per batch cost more than it moved.
final class SegmentReadAhead: @unchecked Sendable {
    /// A batch, and the ``CommandDigest`` of each record in it that is a command applied (whose outcome is
    /// ``RequestOutcome/applied`` or unknown), `nil` for the others and in a batch the applying thread decoded
    /// itself: what the apply would compute itself.
    typealias Batch = (batch: SegmentBatch, digests: [CommandDigest?])
    fileprivate typealias Item = Result<Batch?, SegmentProblem>

    /// The batches decoded and not yet taken, at most.
    static let capacity = 32

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
        var decoded: [Item] = []
        /// Whether the segment's end or a problem has been handed over: nothing more is read.
        var ended = false
        var readerWaits = false
        var stopping = false
    }

    /// What a thread does next: decode the batch after `position`, or (the reading thread) wait for room or stop.
    private enum Step {
        case decode(Position)
        case wait
        case stop
    }

    private let shared: Mutex<Shared>
    private let wakeReader = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    /// The batches taken and not yet handed out, and the next one's position: the applying thread's own.
    private var taken: [Item] = []
    private var position = 0
    /// The applying thread's LZ4 context, for the batches it decodes itself.
    private let applierDecoder = LZ4Frame.Decoder()
    private var finished = false

    /// Starts reading `reader`'s batches from where it stands.
    init(_ reader: SegmentReader) {
        shared = Mutex(Shared(position: Position(reader: reader)))
        taken.reserveCapacity(Self.capacity)
        let thread = startDedicatedThread("replay read-ahead") { [self] in
            read(with: LZ4Frame.Decoder())
            done.signal()
        }
        pthread_detach(thread)
    }

    /// The reading thread: decodes the batch after the last one handed over and hands it over, unless the applying
    /// thread handed it over first.
    private func read(with decoder: LZ4Frame.Decoder?) {
        // Microseconds to sleep after a batch the applying thread handed over first.
        var backOff: UInt32 = 0
        while true {
            let step = shared.withLock { shared -> Step in
                if shared.stopping || shared.ended { return .stop }
                shared.readerWaits = shared.decoded.count >= Self.capacity
                return shared.readerWaits ? .wait : .decode(shared.position)
            }
            switch step {
            case .stop: return
            case .wait: wakeReader.wait()
            case .decode(let from):
                var reader = from.reader.using(decoder)
                let item = Self.decode(&reader, digests: true)
                let handed = shared.withLock { shared in
                    guard shared.handOver(item, after: from.handedOver, Position(reader: reader)) else { return false }
                    shared.decoded.append(item)
                    return true
                }
                // The applying thread decoded that batch itself: this thread is not keeping up (most likely the
                // scheduler runs something else on the other core), and the same work twice only takes CPU time
                // from it. It steps aside, longer each time, until it keeps up again.
                backOff = handed ? 0 : min(max(2 * backOff, 250), 16_000)
                if backOff > 0 { usleep(backOff) }
            }
        }
    }

    private static func decode(_ reader: inout SegmentReader, digests: Bool) -> Item {
        Result { () throws(SegmentProblem) -> Batch? in
            try reader.next().map { batch in
                (batch, digests ? Self.digests(of: batch) : Array(repeating: nil, count: batch.records.count))
            }
        }
    }

    private static func digests(of batch: SegmentBatch) -> [CommandDigest?] {
        batch.records.map { record in
            guard case .command(_, _, _, let command, let outcome) = record, outcome ?? .applied == .applied else {
                return nil
            }
            return CommandDigest(command)
        }
    }

    /// The next batch, `nil` at the end of the segment, as ``SegmentReader/next()``; not to be called again after
    /// either `nil` or a problem.
    func next() throws(SegmentProblem) -> Batch? {
        while position == taken.count {
            taken.removeAll(keepingCapacity: true)
            position = 0
            let (step, wake) = shared.withLock { shared -> (Step, Bool) in
                guard shared.decoded.isEmpty else {
                    swap(&shared.decoded, &taken)
                    return (.wait, shared.takeReaderWaits())
                }
                return (.decode(shared.position), false)
            }
            if wake { wakeReader.signal() }
            guard case .decode(let from) = step else { continue }
            // Nothing decoded yet: this thread decodes the next batch itself (its digests are left to the apply).
            var reader = from.reader.using(applierDecoder)
            let item = Self.decode(&reader, digests: false)
            if shared.withLock({ $0.handOver(item, after: from.handedOver, Position(reader: reader)) }) {
                return try item.get()
            }
        }
        position += 1
        return try taken[position - 1].get()
    }

    /// Stops the reading thread (at once if it is waiting for room, else once its batch is decoded) and returns the
    /// reader as the batches handed over left it. To be called once the batches wanted are handed out: the thread
    /// runs until then.
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
    /// Hands `item`, decoded after `count` batches, over with the reader as it left it, unless another thread
    /// handed that batch over first; whether it did.
    fileprivate mutating func handOver(
        _ item: SegmentReadAhead.Item, after count: Int, _ after: SegmentReadAhead.Position
    ) -> Bool {
        guard position.handedOver == count else { return false }
        position = after
        position.handedOver = count + 1
        if (try? item.get()) == nil { ended = true }
        return true
    }

    /// Whether the reading thread waits for room; it no longer does once told (by a signal of `wakeReader`).
    fileprivate mutating func takeReaderWaits() -> Bool {
        defer { readerWaits = false }
        return readerWaits
    }
}
