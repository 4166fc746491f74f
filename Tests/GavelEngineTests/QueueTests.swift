import Dispatch
import Synchronization
import Testing

@testable import GavelEngine

final class Item: MPSCNode, @unchecked Sendable {
    let next = Atomic<UnsafeMutableRawPointer?>(nil)
    let producer: Int
    let index: Int
    init(producer: Int, index: Int) {
        self.producer = producer
        self.index = index
    }
}

@Suite("Lock-free queues")
struct QueueTests {
    @Test func mpscQueueDeliversEveryItemOnceInPerProducerOrder() async {
        let queue = IntrusiveMPSCQueue<Item>()
        let producers = 4
        let perProducer = 20000
        let done = Atomic<Int>(0)
        var received: [[Int]] = Array(repeating: [], count: producers)
        DispatchQueue.concurrentPerform(iterations: producers + 1) { worker in
            if worker < producers {
                for i in 0..<perProducer { queue.push(Item(producer: worker, index: i)) }
                done.wrappingAdd(1, ordering: .releasing)
            }
        }
        // The consumer drains after the producers (concurrency with the producers is covered by the writer tests).
        while let item = queue.pop() { received[item.producer].append(item.index) }
        let finishedProducers = done.load(ordering: .acquiring)
        #expect(finishedProducers == producers)
        for p in 0..<producers { #expect(received[p] == Array(0..<perProducer)) }
    }

    @Test func theOldestNodeSeenIsTheOneTheNextPopReturnsAndStaysQueued() {
        let queue = IntrusiveMPSCQueue<Item>()
        #expect(queue.withOldest { $0.index } == nil)
        // Pushes and pops in random runs, so that the queue empties and refills (the stub goes back in between).
        var generator = SystemRandomNumberGenerator()
        var pushed = 0
        var popped = 0
        for _ in 0..<2_000 {
            for _ in 0..<Int.random(in: 0...3, using: &generator) {
                queue.push(Item(producer: 0, index: pushed))
                pushed += 1
            }
            for _ in 0..<Int.random(in: 0...3, using: &generator) {
                let seen = queue.withOldest { $0.index }
                #expect(seen == queue.withOldest { $0.index }, "looking twice removes nothing")
                let item = queue.pop()
                #expect(seen == item?.index)
                #expect(item.map { $0.index == popped } ?? (popped == pushed))
                if item != nil { popped += 1 }
            }
        }
        while let item = queue.pop() {
            #expect(item.index == popped)
            popped += 1
        }
        #expect(popped == pushed)
        #expect(queue.withOldest { $0.index } == nil)
    }

    @Test func theTwoOldestNodesSeenAreTheNextTwoPopsAndTheStubIsNeverNamed() {
        let queue = IntrusiveMPSCQueue<Item>()
        #expect(queue.links.oldest() == nil)
        func index(_ pointer: UnsafeMutableRawPointer) -> Int { MPSCLinks<Item>.withNode(at: pointer) { $0.index } }
        // Runs of pushes and pops, so that the queue empties and refills and the stub goes back in between.
        var generator = SystemRandomNumberGenerator()
        var pushed = 0
        var popped = 0
        var items: [Item] = []
        for _ in 0..<2_000 {
            for _ in 0..<Int.random(in: 0...3, using: &generator) {
                let item = Item(producer: 0, index: pushed)
                items.append(item)
                queue.push(item)
                pushed += 1
            }
            for _ in 0..<Int.random(in: 0...3, using: &generator) {
                let first = queue.links.oldest()
                let second = first.flatMap { queue.links.node(after: $0) }
                #expect(first.map(index) == (popped < pushed ? popped : nil))
                #expect(second.map(index) == (popped + 1 < pushed ? popped + 1 : nil))
                for pointer in [first, second].compactMap({ $0 }) {
                    #expect(items.contains { Unmanaged.passUnretained($0).toOpaque() == pointer })
                }
                if queue.pop() != nil { popped += 1 }
            }
        }
        while queue.pop() != nil { popped += 1 }
        #expect(popped == pushed)
        #expect(queue.links.oldest() == nil)
    }

    @Test func mpscQueueWorksWithAConcurrentConsumer() async {
        let queue = IntrusiveMPSCQueue<Item>()
        let producers = 3
        let perProducer = 20000
        let finished = Atomic<Int>(0)
        let counts = Mutex<[Int]>(Array(repeating: 0, count: producers))
        let ordered = Atomic<Bool>(true)
        DispatchQueue.concurrentPerform(iterations: producers + 1) { worker in
            if worker < producers {
                for i in 0..<perProducer { queue.push(Item(producer: worker, index: i)) }
                finished.wrappingAdd(1, ordering: .releasing)
            } else {
                var next = Array(repeating: 0, count: producers)
                var total = 0
                while total < producers * perProducer {
                    if let item = queue.pop() {
                        if item.index != next[item.producer] { ordered.store(false, ordering: .relaxed) }
                        next[item.producer] += 1
                        total += 1
                    }
                }
                counts.withLock { $0 = next }
            }
        }
        let inOrder = ordered.load(ordering: .relaxed)
        #expect(inOrder)
        #expect(counts.withLock { $0 } == Array(repeating: perProducer, count: producers))
        #expect(queue.pop() == nil)
    }

    @Test func listingQueueRejectsAtItsBound() {
        let queue = ListingQueue(listing: "L", capacity: 3)
        let command = bid("L", "ann", 100, id: "b")
        for _ in 0..<3 { #expect(queue.offer(Submission(command, recipient: nil)) == .accepted) }
        #expect(queue.offer(Submission(command, recipient: nil)) == .full)
        #expect(queue.depth == 3)
    }

    @Test func aRetiredListingQueueRefusesEveryOfferAndOnlyAnEmptyQueueRetires() {
        let queue = ListingQueue(listing: "L", capacity: 3)
        let command = bid("L", "ann", 100, id: "b")
        #expect(queue.offer(Submission(command, recipient: nil)) == .accepted)
        #expect(!queue.retireIfEmpty(), "a command waits in it")
        _ = queue.commands.pop()
        queue.pending.wrappingSubtract(1, ordering: .sequentiallyConsistent)
        #expect(queue.retireIfEmpty())
        for _ in 0..<5 { #expect(queue.offer(Submission(command, recipient: nil)) == .retired) }
        #expect(queue.isRetired)
        #expect(queue.depth == 0)
    }

    @Test func aListingIsScheduledOnceHoweverManyCommandsItHas() {
        let queue = ListingQueue(listing: "L", capacity: 10)
        #expect(queue.claimSchedule())
        #expect(!queue.claimSchedule())
        queue.unschedule()
        #expect(queue.claimSchedule())
    }

    @Test func parkedConsumerWakesForEveryPublicationFromManyProducers() async {
        let parker = Parker()
        let published = Atomic<Int>(0)
        let producers = 4
        let perProducer = 2000
        let finished = Atomic<Bool>(false)
        DispatchQueue.global().async {
            var seen = 0
            while seen < producers * perProducer {
                parker.park(timeoutMs: -1) { published.load(ordering: .sequentiallyConsistent) > seen }
                seen = published.load(ordering: .sequentiallyConsistent)
            }
            finished.store(true, ordering: .releasing)
        }
        DispatchQueue.concurrentPerform(iterations: producers) { _ in
            for _ in 0..<perProducer {
                published.wrappingAdd(1, ordering: .sequentiallyConsistent)
                parker.unpark()
            }
        }
        // Without a lost wake-up the consumer sees every publication; a lost one would leave it asleep forever.
        while !finished.load(ordering: .acquiring) { try? await Task.sleep(for: .milliseconds(1)) }
        #expect(published.load(ordering: .relaxed) == producers * perProducer)
    }
}
