import NIOCore
import NIOWebSocket

/// The WebSocket side of one session as a value with no I/O, in the style of swift-nio's own state machines: the
/// session hands it each frame, each idle tick and each pipeline error, and does what it answers (deliver a whole
/// message, answer a ping, send a close frame). It owns the connection's phase, the text message being reassembled
/// from fragments, and whether a ping of ours is unanswered; so these rules are tested without a channel
/// (`SessionStateMachineTests`).
struct SessionStateMachine {
    enum Phase {
        case open
        /// A close frame was sent (or the channel is being closed); nothing more is written and input is ignored.
        case closing
        case closed
    }

    /// What to do with a frame.
    enum FrameAction: Equatable {
        case ignore
        /// A whole text message (its fragments joined), unmasked.
        case message(ByteBuffer)
        /// Answer a ping with a pong carrying `payload`.
        case pong(ByteBuffer)
        /// Send a close frame with `code` and `reason`, then close.
        case close(WebSocketErrorCode, String)
    }

    /// What to do when the connection has been idle for half the idle timeout.
    enum IdleAction: Equatable {
        case ignore
        case ping
        case close(WebSocketErrorCode, String)
    }

    /// What to do with an error from the pipeline (the frame decoder's, or the channel's).
    enum ErrorAction: Equatable {
        case close(WebSocketErrorCode, String)
        /// Close the channel at once, with no close frame.
        case closeChannel
    }

    private(set) var phase = Phase.open
    /// The text message being reassembled from fragments.
    private var fragments: ByteBuffer?
    /// Where a whole text message is unmasked: the frame's payload is a slice of the connection's read buffer, so
    /// unmasking it in place would copy it into a new buffer per message; this one is written again each time (no
    /// allocation once the caller has let go of the last message).
    private var unmasked = ByteBuffer()
    /// The most bytes ``unmasked`` keeps between messages.
    static let unmaskedKeptBytes = 4 * 1024
    private var awaitingPong = false
    let maxMessageBytes: Int
    /// The most frames one message may come in (its first frame and its continuations).
    let maxFragments: Int
    /// Frames in the message being reassembled.
    private var fragmentCount = 0
    /// Every frame the client sends takes one (data, continuation, ping, pong, close): a flood of frames that never
    /// complete a message (empty continuations, unsolicited pongs) costs the reads and the decoding of each, and
    /// the message rate never sees it. `nil`: no budget.
    private var frames: TokenBucket?
    /// The frame rate, for the close reason.
    let frameRate: RateLimit?

    /// - Parameters:
    ///   - maxFragments: the most frames one message may come in; past it the connection is closed with 1008.
    ///   - frameRate: the frames a connection may send, a token bucket that starts full; past it the connection is
    ///     closed with 1008. `nil`: no limit.
    init(maxMessageBytes: Int, maxFragments: Int = .max, frameRate: RateLimit? = nil, now: UInt64 = 0) {
        self.maxMessageBytes = maxMessageBytes
        self.maxFragments = max(1, maxFragments)
        self.frameRate = frameRate
        frames = frameRate.map { TokenBucket($0, now: now) }
    }

    var isOpen: Bool { phase == .open }

    /// The reason of the close for a connection over its frame rate.
    static func frameRateReason(_ rate: RateLimit) -> String {
        "more than \(rate.perSecond) frames per second (burst \(rate.burst))"
    }

    /// A frame built with NIO's type (tests).
    mutating func frameReceived(_ frame: WebSocketFrame, now: UInt64 = 0) -> FrameAction {
        frameReceived(InboundFrame(frame), now: now)
    }

    /// `now`: ``monotonicNanos()``, for the frame budget.
    mutating func frameReceived(_ frame: InboundFrame, now: UInt64 = 0) -> FrameAction {
        awaitingPong = false
        guard phase == .open else { return .ignore }
        if let rate = frameRate, frames?.take(now: now) == false {
            return fail(.policyViolation, Self.frameRateReason(rate))
        }
        guard frame.mask != nil else { return fail(.protocolError, "client frames must be masked") }
        guard !frame.rsv1 && !frame.rsv2 && !frame.rsv3 else {
            return fail(.protocolError, "reserved bits set without an extension")
        }
        switch frame.opcode {
        case .text:
            guard fragments == nil else { return fail(.protocolError, "a new message began before the last ended") }
            guard frame.fin else {
                fragments = frame.unmaskedData
                fragmentCount = 1
                return .ignore
            }
            return .message(unmask(frame))
        case .continuation:
            guard var buffer = fragments else { return fail(.protocolError, "continuation frame without a message") }
            fragments = nil
            fragmentCount += 1
            guard fragmentCount <= maxFragments else {
                return fail(.policyViolation, "message in more than \(maxFragments) fragments")
            }
            var payload = frame.unmaskedData
            guard buffer.readableBytes + payload.readableBytes <= maxMessageBytes else {
                return fail(.messageTooLarge, "message larger than \(maxMessageBytes) bytes")
            }
            buffer.writeBuffer(&payload)
            if frame.fin { return .message(buffer) }
            fragments = buffer
            return .ignore
        case .binary:
            return fail(.unacceptableData, "binary messages are not accepted; send JSON text")
        case .ping:
            return .pong(frame.unmaskedData)
        case .pong:
            return .ignore
        case .connectionClose:
            return closeReceived(frame.unmaskedData)
        default:
            return fail(.protocolError, "unknown opcode")
        }
    }

    /// The payload of `frame` (masked, checked by the caller) unmasked into ``unmasked``.
    private mutating func unmask(_ frame: InboundFrame) -> ByteBuffer {
        if unmasked.capacity > Self.unmaskedKeptBytes { unmasked = ByteBuffer() } else { unmasked.clear() }
        if let pattern = frame.maskPattern {
            Self.unmask(frame.data, pattern: pattern, into: &unmasked)
        } else {
            unmasked.writeImmutableBuffer(frame.data)
        }
        return unmasked
    }

    /// The masking key's bytes in the order they apply from the payload's first byte, twice: one 8-byte word to XOR
    /// with. `keyByte(i)` is the key's byte for payload byte `i` (`i` in 0..<8).
    static func maskPattern(_ keyByte: (Int) -> UInt8) -> UInt64 {
        var pattern: UInt64 = 0
        withUnsafeMutableBytes(of: &pattern) { word in
            for i in 0..<8 { word[i] = keyByte(i) }
        }
        return pattern
    }

    /// Appends `data` XORed with `pattern` (the masking key's bytes in the order they apply, twice) to `out`: the copy
    /// and the XOR in one pass, eight bytes a step (swift-nio's `webSocketUnmask` takes a byte a step, with a division
    /// for each, after a separate copy).
    static func unmask(_ data: ByteBuffer, pattern: UInt64, into out: inout ByteBuffer) {
        let count = data.readableBytes
        guard count > 0 else { return }
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { target in
            data.withUnsafeReadableBytes { source in
                var i = 0
                while i + 8 <= count {
                    let word = source.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ pattern
                    target.storeBytes(of: word, toByteOffset: i, as: UInt64.self)
                    i += 8
                }
                withUnsafeBytes(of: pattern) { key in
                    while i < count {
                        target[i] = source[i] ^ key[i & 7]
                        i += 1
                    }
                }
            }
            return count
        }
    }

    /// A close frame from the client: answered with its code when it is valid, refused as a protocol error when not.
    private mutating func closeReceived(_ payload: ByteBuffer) -> FrameAction {
        var data = payload
        guard data.readableBytes != 1 else { return fail(.protocolError, "a close payload of one byte") }
        guard let code = data.readInteger(as: UInt16.self) else { return .close(.normalClosure, "") }
        guard String(validating: data.readableBytesView, as: UTF8.self) != nil else {
            return fail(.dataInconsistentWithMessage, "close reason is not UTF-8")
        }
        let valid = (1000...1003).contains(code) || (1007...1014).contains(code) || (3000...4999).contains(code)
        guard valid else { return fail(.protocolError, "invalid close code \(code)") }
        return .close(WebSocketErrorCode(codeNumber: Int(code)), "")
    }

    private mutating func fail(_ code: WebSocketErrorCode, _ reason: String) -> FrameAction {
        fragments = nil
        return .close(code, reason)
    }

    /// Half the idle timeout passed with nothing read: ping the client, or close if the last ping got no answer.
    mutating func idle() -> IdleAction {
        guard phase == .open else { return .ignore }
        if awaitingPong { return .close(.goingAway, "idle timeout") }
        awaitingPong = true
        return .ping
    }

    mutating func errorCaught(_ error: Error) -> ErrorAction {
        switch error {
        case NIOWebSocketError.invalidFrameLength:
            fragments = nil
            return .close(.messageTooLarge, "frame larger than \(maxMessageBytes) bytes")
        case is NIOWebSocketError:
            fragments = nil
            return .close(.protocolError, "invalid frame")
        default:
            phase = .closing
            return .closeChannel
        }
    }

    /// The session is about to send its close frame: `true` when it was open (it is closing from now on), `false`
    /// when it is closing or closed already (nothing to send).
    mutating func startClosing() -> Bool {
        guard phase == .open else { return false }
        phase = .closing
        return true
    }

    /// The channel went away: `true` the first time (the session lets go of what it holds then).
    mutating func channelClosed() -> Bool {
        guard phase != .closed else { return false }
        phase = .closed
        return true
    }
}
