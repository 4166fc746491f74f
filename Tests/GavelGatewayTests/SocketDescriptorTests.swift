import NIOCore
import NIOEmbedded
import NIOPosix
import Synchronization
import Testing

@testable import GavelGateway

#if canImport(Glibc)
    import Glibc
#endif

/// Sessions send to a plain TCP connection's socket themselves, so the descriptor found for a channel must be that
/// channel's socket and no other.
@Suite struct SocketDescriptorTests {
    /// The local port of socket `fd`, or of its peer.
    private func port(of fd: CInt, peer: Bool) -> Int? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length)
            }
        }
        guard rc == 0, CInt(storage.ss_family) == AF_INET else { return nil }
        let address = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test(.timeLimit(.minutes(1))) func eachAcceptedConnectionsDescriptorIsItsOwnSocket() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        final class Accepted: Sendable { let channels = Mutex<[any Channel]>([]) }
        let accepted = Accepted()
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                accepted.channels.withLock { $0.append(channel) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        var clients: [any Channel] = []
        for _ in 0..<3 {
            clients.append(try await ClientBootstrap(group: group).connect(to: server.localAddress!).get())
        }
        for _ in 0..<200 where accepted.channels.withLock({ $0.count }) < clients.count {
            try await Task.sleep(for: .milliseconds(10))
        }
        let children = accepted.channels.withLock { $0 }
        #expect(children.count == clients.count)
        var found: Set<CInt> = []
        for child in children {
            let fd = try #require(try await child.eventLoop.submit { SocketDescriptor.of(child) }.get())
            found.insert(fd)
            // The socket's peer is the client that connected to this channel, and it is the server's port locally.
            #expect(port(of: fd, peer: true) == child.remoteAddress?.port)
            #expect(port(of: fd, peer: false) == server.localAddress?.port)
            #expect(clients.contains { $0.localAddress?.port == port(of: fd, peer: true) })
        }
        #expect(found.count == children.count)
        // The server's listening channel is a socket too, but has no peer: not taken.
        #expect(try await server.eventLoop.submit { SocketDescriptor.of(server) }.get() == nil)
        for client in clients { try await client.close() }
        try await server.close()
        try await group.shutdownGracefully()
    }

    @Test func aChannelWithoutASocketHasNoDescriptor() {
        #expect(SocketDescriptor.of(EmbeddedChannel()) == nil)
    }
}
