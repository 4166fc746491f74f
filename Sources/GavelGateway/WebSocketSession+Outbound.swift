import GavelCore
import GavelEngine
import GavelWire
import NIOCore
import NIOWebSocket

/// What the session writes: its own messages, the fan-out's frames, flushing and closing.
extension WebSocketSession {
    // MARK: - Outbound

    func sendResult(id: String?, _ result: CommandResult) {
        MessageEncoder.result(id: id, result, ts: SystemClock().now(), into: &resultBytes)
        send(resultBytes)
    }

    func send(_ json: [UInt8]) {
        send(frame: ServerFrame.text(json))
    }

    func send(frame: ByteBuffer) {
        guard machine.isOpen, let out = output.context else { return }
        unflushedBytes += frame.readableBytes
        out.write(NIOAny(frame), promise: nil)
        needsFlush = true
        // Unflushed writes count towards the outbound limit: flush once a quarter of it is queued, so that a big
        // task (a durable group of many events) cannot make a client that reads look slow.
        if unflushedBytes >= configuration.maxOutboundBytes / 4 {
            flushIfNeeded()
        }
        if !markedDirty, let loop, loop.delivering {
            markedDirty = true
            loop.markDirty(self)
        }
    }

    /// Writes an already-encoded frame from the fan-out; flushed once at the end of the loop's task (or of the
    /// current read).
    func enqueue(_ frame: ByteBuffer) {
        context?.eventLoop.assertInEventLoop()
        send(frame: frame)
    }

    func flushIfNeeded() {
        guard needsFlush, let out = output.context else { return }
        needsFlush = false
        metrics.bytesOut.increment(by: unflushedBytes)
        unflushedBytes = 0
        out.flush()
    }

    /// Sends a close frame and closes the connection once it is written (or after two seconds, for a client that
    /// does not read). Nothing more is written or read.
    func close(_ code: WebSocketErrorCode, _ reason: String) {
        guard let context, let out = output.context, machine.startClosing() else { return }
        let frame = ServerFrame.close(code, reason: reason)
        needsFlush = false
        let channel = context.channel
        let promise = context.eventLoop.makePromise(of: Void.self)
        out.writeAndFlush(NIOAny(frame), promise: promise)
        let timeout = context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        promise.futureResult.whenComplete { _ in
            timeout.cancel()
            channel.close(promise: nil)
        }
    }
}
