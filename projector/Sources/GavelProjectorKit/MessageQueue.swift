import NIOCore
import Synchronization

/// A feed message and the size of the frame it came in (what a batch's byte bound counts).
struct Received: Sendable {
    var message: FeedMessage
    var bytes: Int
}

/// A bounded queue between the task that reads and parses the feed and the task that writes batches: one producer,
/// one consumer. The producer waits while `capacity` messages are queued, so the writer's pace reaches the socket.
final class MessageQueue: Sendable {
    private struct State {
        var items = CircularBuffer<Received>()
        var finished = false
        var consumer: CheckedContinuation<Void, Never>?
        var producer: CheckedContinuation<Void, Never>?
    }

    private let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// Adds `message`, first waiting for room. Returns false once the queue is finished (the consumer is gone).
    func push(_ message: Received) async -> Bool {
        while true {
            let full = state.withLock { state -> Bool? in
                if state.finished { return nil }
                if state.items.count >= capacity { return true }
                state.items.append(message)
                state.consumer.take()?.resume()
                return false
            }
            guard let full else { return false }
            if !full { return true }
            await withCheckedContinuation { continuation in
                state.withLock { state in
                    if state.finished || state.items.count < capacity {
                        continuation.resume()
                    } else {
                        state.producer = continuation
                    }
                }
            }
        }
    }

    /// Ends the queue: the consumer takes what is left, then nil; a waiting producer is released.
    func finish() {
        state.withLock { state in
            state.finished = true
            state.consumer.take()?.resume()
            state.producer.take()?.resume()
        }
    }

    /// Up to `max` messages. Waits while the queue is empty: without a deadline until a message comes, with one
    /// until then (answering `[]`). nil once the queue is finished and empty.
    func take(max: Int, until deadline: ContinuousClock.Instant?) async -> [Received]? {
        while true {
            let taken = state.withLock { state -> [Received]? in
                if state.items.isEmpty { return state.finished ? nil : [] }
                let count = min(max, state.items.count)
                var out: [Received] = []
                out.reserveCapacity(count)
                for _ in 0..<count { out.append(state.items.removeFirst()) }
                state.producer.take()?.resume()
                return out
            }
            guard let taken else { return nil }
            if !taken.isEmpty { return taken }
            if let deadline {
                // A batch is open: look again shortly, until its latency is up.
                let now = ContinuousClock.now
                if now >= deadline { return [] }
                try? await Task.sleep(until: min(deadline, now.advanced(by: .milliseconds(2))), clock: .continuous)
                continue
            }
            await withCheckedContinuation { continuation in
                state.withLock { state in
                    if state.finished || !state.items.isEmpty {
                        continuation.resume()
                    } else {
                        state.consumer = continuation
                    }
                }
            }
        }
    }
}
