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
                SessionStateMachine.unmask(ByteBuffer(bytes: payload), key: key, indexOffset: offset, into: &out)
                #expect(
                    Array(out.readableBytesView) == [7, 7, 7] + Array(expected.readableBytesView), "\(length) \(offset)"
                )
            }
        }
    }
}
