import NIOCore
import Testing

@testable import GavelGateway

#if canImport(Glibc)
    import Glibc
#endif

/// A loop's sends to many sockets go through one io_uring submission: each socket must get exactly its own bytes,
/// and a socket that cannot take them must answer as a `send` would, without holding the others up.
/// Whether this kernel lets the process have an io_uring (a container's seccomp profile may forbid it; the server
/// then sends one by one).
private let ioUringAvailable = (try? SocketSendBatch.make().get()) != nil

@Suite(.enabled(if: ioUringAvailable, "the kernel allows no io_uring here"))
struct SocketSendBatchTests {
    /// A connected pair of stream sockets: (the sending end, the reading end).
    private func pair() throws -> (CInt, CInt) {
        var fds: [CInt] = [0, 0]
        try #require(socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0, &fds) == 0)
        return (fds[0], fds[1])
    }

    /// Everything the reading end `fd` holds now.
    private func drain(_ fd: CInt) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT)) }
            guard n > 0 else { return bytes }
            bytes += chunk[..<n]
        }
    }

    private func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    @Test func eachSocketGetsItsOwnBytesFromOneSubmissionAndTheBatchIsReused() throws {
        let batch = try SocketSendBatch.make().get()
        let pairs = try (0..<5).map { _ in try pair() }
        defer {
            for (a, b) in pairs {
                close(a)
                close(b)
            }
        }
        for round in 0..<3 {
            var sent: [Int: Int32] = [:]
            for (index, (fd, _)) in pairs.enumerated() {
                #expect(batch.add(fd: fd, buffer("round \(round) to socket \(index)")) == index)
            }
            #expect(batch.count == 5)
            batch.send { index, result in sent[index] = result }
            #expect(batch.count == 0)
            for (index, (_, peer)) in pairs.enumerated() {
                let wanted = Array("round \(round) to socket \(index)".utf8)
                #expect(sent[index] == Int32(wanted.count))
                #expect(drain(peer) == wanted)
            }
        }
    }

    @Test func aFullSocketAnswersEAGAINAndTakesNothingWhileTheOthersGetTheirBytes() throws {
        let batch = try SocketSendBatch.make().get()
        let (full, fullPeer) = try pair()
        let (open, openPeer) = try pair()
        defer { for fd in [full, fullPeer, open, openPeer] { close(fd) } }
        var small: CInt = 4096
        setsockopt(full, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<CInt>.size))
        let filler = [UInt8](repeating: 0x61, count: 4096)
        var filled = 0
        while true {
            let n = filler.withUnsafeBytes { send(full, $0.baseAddress, $0.count, CInt(MSG_DONTWAIT)) }
            guard n > 0 else { break }
            filled += n
        }
        #expect(filled > 0)
        var results: [Int: Int32] = [:]
        _ = batch.add(fd: full, buffer("never sent"))
        _ = batch.add(fd: open, buffer("sent"))
        batch.send { index, result in results[index] = result }
        #expect(results[0] == -EAGAIN)
        #expect(results[1] == 4)
        #expect(drain(openPeer) == Array("sent".utf8))
        // The full socket got nothing more than its filler.
        #expect(drain(fullPeer).count == filled)
    }

    @Test func aSocketWhosePeerLeftAnswersAnErrorAndNoSignal() throws {
        let batch = try SocketSendBatch.make().get()
        let (fd, peer) = try pair()
        defer { close(fd) }
        close(peer)
        var result: Int32 = 0
        _ = batch.add(fd: fd, buffer("to nobody"))
        batch.send { _, sent in result = sent }
        // MSG_NOSIGNAL: the process is still here to see EPIPE.
        #expect(result == -EPIPE)
    }

    @Test func aBatchHoldsAtMostItsCapacityAndSaysWhenFull() throws {
        let batch = try SocketSendBatch.make().get()
        #expect(batch.capacity >= Int(SocketSendBatch.entries))
        // Spread over 16 sockets: a local socket holds a few hundred small sends at most.
        let pairs = try (0..<16).map { _ in try pair() }
        defer {
            for (a, b) in pairs {
                close(a)
                close(b)
            }
        }
        for index in 0..<batch.capacity { _ = batch.add(fd: pairs[index % 16].0, buffer("x")) }
        #expect(!batch.hasRoom)
        var answered = 0
        batch.send { _, sent in answered += sent == 1 ? 1 : 0 }
        #expect(answered == batch.capacity)
        #expect(batch.hasRoom && pairs.map { drain($0.1).count }.reduce(0, +) == batch.capacity)
    }
}

/// A send of a batch whose answer never came leaves the connection's stream unknown: the session closes it rather
/// than write the same bytes again (or the next ones after a gap).
@Suite struct UnansweredSendTests {
    @Test func aSessionWhoseBatchedSendWasNeverAnsweredClosesItsConnection() throws {
        let harness = try SessionHarness()
        let session = try harness.channel.pipeline.syncOperations.handler(type: WebSocketSession.self)
        #expect(harness.channel.isActive)
        session.finishFlush(sent: SocketSendBatch.unknown)
        harness.channel.embeddedEventLoop.run()
        #expect(!harness.channel.isActive)
    }
}
