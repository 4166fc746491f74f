import NIOCore
import NIOWebSocket
import Testing

@testable import GavelGateway

/// The WebSocket rules of a session, without a channel: what each frame, idle tick and error leads to.
@Suite struct SessionStateMachineTests {
    typealias Action = SessionStateMachine.FrameAction

    private func text(_ s: String) -> ByteBuffer { ByteBuffer(string: s) }

    private func frame(_ opcode: WebSocketOpcode, _ payload: String = "", fin: Bool = true) -> WebSocketFrame {
        clientFrame(opcode, Array(payload.utf8), fin: fin)
    }

    /// What a fresh machine (message limit `limit`) answers to each of `frames`, in order.
    private func answers(_ frames: [WebSocketFrame], limit: Int = 100) -> [Action] {
        var machine = SessionStateMachine(maxMessageBytes: limit)
        return frames.map { machine.frameReceived($0) }
    }

    @Test func aWholeTextFrameIsAMessageAndFragmentsAreJoinedIntoOne() {
        let got = answers([
            frame(.text, "{}"), frame(.text, "{\"a\"", fin: false), frame(.continuation, ":", fin: false),
            frame(.continuation, "1}"),
        ])
        #expect(got == [.message(text("{}")), .ignore, .ignore, .message(text("{\"a\":1}"))])
    }

    @Test func protocolErrorsCloseWithTheirCodeAndAReasonAPersonCanActOn() {
        let unmasked = answers([clientFrame(.text, Array("{}".utf8), masked: false)])
        #expect(unmasked == [.close(.protocolError, "client frames must be masked")])
        let interleaved = answers([frame(.text, "{", fin: false), frame(.text, "{}")])
        #expect(interleaved.last == .close(.protocolError, "a new message began before the last ended"))
        let orphan = answers([frame(.continuation, "}")])
        #expect(orphan == [.close(.protocolError, "continuation frame without a message")])
        let binary = answers([frame(.binary, "x")])
        #expect(binary == [.close(.unacceptableData, "binary messages are not accepted; send JSON text")])
    }

    @Test func fragmentsBeyondTheMessageLimitCloseWithMessageTooLarge() {
        let got = answers([frame(.text, "12345", fin: false), frame(.continuation, "6789")], limit: 8)
        #expect(got.last == .close(.messageTooLarge, "message larger than 8 bytes"))
    }

    @Test func aPingIsAnsweredWithItsPayloadAndACloseWithItsCodeOrARefusal() {
        #expect(answers([frame(.ping, "hi")]) == [.pong(text("hi"))])
        #expect(answers([frame(.connectionClose)]) == [.close(.normalClosure, "")])
        #expect(answers([clientFrame(.connectionClose, [0x03, 0xE9])]) == [.close(.goingAway, "")])
        #expect(
            answers([clientFrame(.connectionClose, [0x03, 0xEC])]) == [
                .close(.protocolError, "invalid close code 1004")
            ])
        #expect(
            answers([clientFrame(.connectionClose, [0x03])]) == [.close(.protocolError, "a close payload of one byte")])
    }

    @Test func anIdleConnectionIsPingedThenClosedUnlessItAnswers() {
        var machine = SessionStateMachine(maxMessageBytes: 100)
        let first = machine.idle()
        _ = machine.frameReceived(frame(.pong))
        let afterAnswer = machine.idle()
        let unanswered = machine.idle()
        #expect(first == .ping)
        #expect(afterAnswer == .ping, "the answer reset the wait")
        #expect(unanswered == .close(.goingAway, "idle timeout"))
    }

    @Test func onceClosingNothingIsReadAndTheCloseFrameIsSentOnce() {
        var machine = SessionStateMachine(maxMessageBytes: 100)
        let closing = machine.startClosing()
        let again = machine.startClosing()
        let read = machine.frameReceived(frame(.text, "{}"))
        let idle = machine.idle()
        let closed = machine.channelClosed()
        let closedAgain = machine.channelClosed()
        #expect(closing && !again)
        #expect(read == .ignore && idle == .ignore)
        #expect(closed && !closedAgain)
    }

    @Test func decoderErrorsCloseWithAFrameAndOtherErrorsCloseTheChannel() {
        struct Other: Error {}
        var machine = SessionStateMachine(maxMessageBytes: 100)
        let tooLong = machine.errorCaught(NIOWebSocketError.invalidFrameLength)
        let invalid = machine.errorCaught(NIOWebSocketError.fragmentedControlFrame)
        let other = machine.errorCaught(Other())
        #expect(tooLong == .close(.messageTooLarge, "frame larger than 100 bytes"))
        #expect(invalid == .close(.protocolError, "invalid frame"))
        #expect(other == .closeChannel)
        #expect(!machine.isOpen)
    }

    /// Unmasking eight bytes a step gives what swift-nio's byte-by-byte unmask gives, for every payload length up to
    /// 70 (every tail length after the 8-byte words), every offset into the key, random keys, appended after bytes
    /// already in the buffer.
    @Test func unmaskingAWordAtATimeGivesWhatNIOsUnmaskGives() {
        var generator = SystemRandomNumberGenerator()
        for length in 0...70 {
            for offset in 0..<4 {
                let key = WebSocketMaskingKey((0..<4).map { _ in UInt8.random(in: 0...255, using: &generator) })!
                let payload = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                var expected = ByteBuffer(bytes: payload)
                expected.webSocketUnmask(key, indexOffset: offset)
                var out = ByteBuffer(bytes: [7, 7, 7])
                SessionStateMachine.unmask(
                    ByteBuffer(bytes: payload), pattern: SessionStateMachine.maskPattern { key[($0 + offset) % 4] },
                    into: &out)
                #expect(
                    Array(out.readableBytesView) == [7, 7, 7] + Array(expected.readableBytesView), "\(length) \(offset)"
                )
            }
        }
    }

    // MARK: - Frame budget and fragments

    /// A machine with a frame budget of `perSecond` frames a second and `burst` at once, at time 0.
    private func budgeted(perSecond: Int = 10, burst: Int = 5, fragments: Int = .max) -> SessionStateMachine {
        SessionStateMachine(
            maxMessageBytes: 100, maxFragments: fragments, frameRate: RateLimit(perSecond: perSecond, burst: burst),
            now: 0)
    }

    @Test func aFloodOfEmptyContinuationFramesIsClosedWithPolicyViolationOnceTheFrameBurstIsSpent() {
        var machine = budgeted()
        #expect(machine.frameReceived(frame(.text, "{", fin: false), now: 0) == .ignore)
        for _ in 0..<4 { #expect(machine.frameReceived(frame(.continuation, fin: false), now: 0) == .ignore) }
        #expect(
            machine.frameReceived(frame(.continuation, fin: false), now: 0)
                == .close(.policyViolation, "more than 10 frames per second (burst 5)"))
    }

    @Test func unsolicitedPongsAndPingsTakeFromTheFrameBudgetToo() {
        var pongs = budgeted(burst: 3)
        let answered = (0..<4).map { _ in pongs.frameReceived(frame(.pong), now: 0) }
        #expect(
            answered == [
                .ignore, .ignore, .ignore, .close(.policyViolation, "more than 10 frames per second (burst 3)"),
            ])
        var pings = budgeted(burst: 2)
        #expect(pings.frameReceived(frame(.ping), now: 0) == .pong(ByteBuffer()))
        #expect(pings.frameReceived(frame(.ping), now: 0) == .pong(ByteBuffer()))
        #expect(
            pings.frameReceived(frame(.ping), now: 0)
                == .close(.policyViolation, "more than 10 frames per second (burst 2)"))
    }

    @Test func theFrameBudgetRefillsWithTimeSoASteadyClientWithinItIsNeverClosed() {
        var machine = budgeted(perSecond: 10, burst: 5)
        // 10 frames a second for 10 seconds, one every 100 ms: within the rate, whatever the burst.
        for n in 0..<100 {
            let now = UInt64(n) * 100_000_000
            #expect(machine.frameReceived(frame(.text, "{}"), now: now) == .message(text("{}")))
        }
        #expect(machine.isOpen)
    }

    @Test func aMessageInAsManyFragmentsAsTheLimitIsDeliveredAndOneMoreIsClosedWithPolicyViolation() {
        var atLimit = budgeted(burst: 100, fragments: 4)
        let pieces = [
            frame(.text, "{\"a\"", fin: false), frame(.continuation, ":", fin: false),
            frame(.continuation, "1", fin: false), frame(.continuation, "}"),
        ]
        #expect(pieces.map { atLimit.frameReceived($0, now: 0) }.last == .message(text("{\"a\":1}")))
        // The count starts again with the next message.
        #expect(
            [frame(.text, "{", fin: false), frame(.continuation, "}")].map { atLimit.frameReceived($0, now: 0) }.last
                == .message(text("{}")))
        var over = budgeted(burst: 100, fragments: 4)
        let five = [frame(.text, "{", fin: false)] + (0..<4).map { _ in frame(.continuation, fin: false) }
        #expect(
            five.map { over.frameReceived($0, now: 0) }.last
                == .close(.policyViolation, "message in more than 4 fragments"))
    }

    @Test func aLargeMessageInManyFramesWithinTheDefaultLimitsIsDelivered() {
        let c = GatewayConfiguration()
        var machine = SessionStateMachine(
            maxMessageBytes: c.maxMessageBytes, maxFragments: c.maxFragmentsPerMessage, frameRate: c.frameRate, now: 0)
        // 64 KiB less a little, in the most fragments allowed, all at once.
        let piece = String(repeating: "x", count: (c.maxMessageBytes - 16) / c.maxFragmentsPerMessage)
        var frames = [frame(.text, "[\"", fin: false)]
        frames += (0..<(c.maxFragmentsPerMessage - 2)).map { _ in frame(.continuation, piece, fin: false) }
        frames.append(frame(.continuation, "\"]"))
        let answers = frames.map { machine.frameReceived($0, now: 0) }
        #expect(answers.dropLast().allSatisfy { $0 == .ignore })
        guard case .message(let whole)? = answers.last else {
            Issue.record("not delivered: \(String(describing: answers.last))")
            return
        }
        #expect(whole.readableBytes == 4 + piece.utf8.count * (c.maxFragmentsPerMessage - 2))
    }

    @Test func aConnectionsFrameRateIsNeverBelowItsMessageRate() {
        var c = GatewayConfiguration()
        c.frameRate = RateLimit(perSecond: 10, burst: 20)
        c.serviceRate = RateLimit(perSecond: 1_000_000, burst: 2_000_000)
        #expect(c.frameRate(for: .bidder) == RateLimit(perSecond: 50, burst: 100))
        #expect(c.frameRate(for: .service) == RateLimit(perSecond: 1_000_000, burst: 2_000_000))
        c.frameRate = RateLimit(perSecond: 500, burst: 700)
        #expect(c.frameRate(for: .watcher) == RateLimit(perSecond: 500, burst: 700))
    }
}
