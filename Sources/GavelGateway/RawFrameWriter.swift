import NIOCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Sits next to the socket (or to TLS) so that sessions can write complete, already-encoded WebSocket frames past
/// the frame encoder the upgrade installs (which would frame them again); everything else passes through. On a
/// plain TCP connection it is also how a session's flush reaches the socket without the channel.
///
/// Why without the channel: one event delivered to a thousand watchers is a thousand flushes, each one `send(2)`
/// whatever writes it, but a write and a flush through the channel also take the channel's pending-write queue, a
/// write record and a flush through the pipeline, touching the channel's, the pipeline's and the queue's objects for
/// every connection: cache misses that cost the event loop about as much again as the `send` (a third of its time in
/// a fan-out profile). So a flush is one `send` of the session's buffer when the channel holds nothing of this
/// connection. What the socket does not take then (its buffer is full: a slow reader) goes to the channel, and so
/// does everything after it until the channel reports all of it written; the bytes leave in the order they were
/// written either way, and a slow reader is seen (writability, the outbound limits) exactly as before. Over TLS
/// every byte goes through the channel.
final class RawFrameWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private(set) var context: ChannelHandlerContext?
    /// Whether flushes may go to the socket itself (a plain TCP connection).
    private let sendsToSocket: Bool
    /// The socket's descriptor while flushes may be sent to it directly, -1 otherwise.
    private(set) var descriptor: CInt = -1
    private var channel: (any Channel)?
    /// Whether bytes handed to the channel may still be unwritten. True at first: the upgrade's response went
    /// through the channel.
    private var channelMayHold = true
    /// Counts the hand-overs to the channel: only the newest one's completion says the channel holds nothing.
    private var handOvers: UInt64 = 0

    init(sendsToSocket: Bool = false) {
        self.sendsToSocket = sendsToSocket
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        guard sendsToSocket else { return }
        channel = context.channel
        descriptor = SocketDescriptor.of(context.channel) ?? -1
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        channel = nil
        descriptor = -1
    }

    /// The socket to send `buffer`'s readable bytes to itself, when the channel holds nothing of this connection
    /// and is still open and there are bytes to send; `nil` when they must go through the channel.
    func directDescriptor(for buffer: ByteBuffer) -> CInt? {
        let fd = descriptor
        // `isActive` turns false before the channel closes the descriptor and calls anyone back: a descriptor
        // checked here is still this connection's.
        guard fd >= 0, !channelMayHold, buffer.readableBytes > 0, let channel, channel.isActive else { return nil }
        return fd
    }

    /// Sends `buffer`'s readable bytes to the socket itself when ``directDescriptor(for:)`` gives one; moves
    /// `buffer`'s reader index past what the socket took. True when it took them all; false when the rest must go
    /// through the channel (nothing was sent, or only part, or the send failed: the channel meets the same error
    /// and closes the connection as it would have).
    func sendDirectly(_ buffer: inout ByteBuffer) -> Bool {
        guard let fd = directDescriptor(for: buffer) else { return false }
        let sent = buffer.withUnsafeReadableBytes { bytes -> Int in
            while true {
                let n = send(fd, bytes.baseAddress, bytes.count, CInt(MSG_NOSIGNAL | MSG_DONTWAIT))
                if n < 0 && errno == EINTR { continue }
                return n
            }
        }
        return Self.took(sent, of: &buffer)
    }

    /// Whether a send that returned `sent` took all of `buffer`'s readable bytes; moves the reader index past what
    /// it took when it took part.
    static func took(_ sent: Int, of buffer: inout ByteBuffer) -> Bool {
        if sent == buffer.readableBytes { return true }
        if sent > 0 { buffer.moveReaderIndex(forwardBy: sent) }
        return false
    }

    /// Hands `buffer` to the channel (not flushed): flushes go through the channel until it has written it.
    /// `promise` completes once it, and everything written before it, is on the socket.
    func write(_ buffer: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard let context else {
            promise?.succeed(())
            return
        }
        channelMayHold = true
        handOvers &+= 1
        context.write(NIOAny(buffer), promise: promise)
    }

    /// Flushes the channel. When flushes may go to the socket itself and the channel holds bytes, an empty write
    /// goes first, whose completion says that everything handed over before it is on the socket: then, unless
    /// more was handed over since, they go to the socket again.
    func flush() {
        guard let context else { return }
        if descriptor >= 0, channelMayHold {
            let handOver = handOvers
            let promise = context.eventLoop.makePromise(of: Void.self)
            promise.futureResult.assumeIsolated().whenSuccess { [self] in
                if handOvers == handOver { channelMayHold = false }
            }
            context.write(NIOAny(ByteBuffer()), promise: promise)
        }
        context.flush()
    }
}

/// The descriptor of a NIO socket channel's socket, which NIO does not expose: read from the channel's description
/// (`fd=N`) and taken only when that descriptor's own local and peer addresses are the channel's, so that a
/// description that reads otherwise can only mean "not found".
enum SocketDescriptor {
    static func of(_ channel: any Channel) -> CInt? {
        let description = String(describing: channel)
        guard let marker = description.range(of: "fd=") else { return nil }
        guard let fd = CInt(description[marker.upperBound...].prefix(while: \.isNumber)), fd >= 0,
            matches(fd, channel.localAddress, peer: false), matches(fd, channel.remoteAddress, peer: true)
        else { return nil }
        return fd
    }

    /// Whether socket `fd`'s local (or, with `peer`, remote) address is `address`.
    private static func matches(_ fd: CInt, _ address: SocketAddress?, peer: Bool) -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length)
            }
        }
        guard rc == 0 else { return false }
        switch address {
        case .v4(let expected):
            guard CInt(storage.ss_family) == AF_INET else { return false }
            let actual = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in.self) }
            return actual.sin_port == expected.address.sin_port
                && actual.sin_addr.s_addr == expected.address.sin_addr.s_addr
        case .v6(let expected):
            guard CInt(storage.ss_family) == AF_INET6 else { return false }
            let actual = withUnsafeBytes(of: storage) { $0.load(as: sockaddr_in6.self) }
            var wanted = expected.address
            return actual.sin6_port == wanted.sin6_port
                && withUnsafeBytes(of: actual.sin6_addr) { a in
                    withUnsafeBytes(of: &wanted.sin6_addr) { a.elementsEqual($0) }
                }
        default:
            return false
        }
    }
}
