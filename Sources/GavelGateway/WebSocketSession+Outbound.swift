import GavelCore
import GavelEngine
import GavelWire
import NIOCore
import NIOWebSocket

/// What the session writes: its own messages, the fan-out's frames, flushing and closing.
extension WebSocketSession {
    // MARK: - Outbound

    func sendResult(id: String?, _ result: CommandResult, ts: Millis = SystemClock().now()) {
        MessageEncoder.result(id: id, result, ts: ts, into: &resultBytes)
        send(resultBytes)
    }

    /// Sends `json` as a text frame, written straight into ``outbound``.
    func send(_ json: [UInt8]) {
        guard machine.isOpen, output.context != nil else { return }
        let before = startOutbound()
        ServerFrame.appendText(json, to: &outbound)
        queued(outbound.writerIndex - before)
    }

    /// Sends a complete frame (or several back to back). One of up to ``outboundKeptBytes`` is copied into
    /// ``outbound``: a few hundred bytes copy for less than a channel write costs, and the fan-out's buffer is free
    /// again at once. A larger one (a feed's chunk, a resume) goes to the channel as it is, after the frames queued
    /// before it.
    func send(frame: ByteBuffer) {
        guard machine.isOpen, output.context != nil else { return }
        if frame.readableBytes > Self.outboundKeptBytes {
            writeOutbound()
            output.write(frame, promise: nil)
        } else {
            _ = startOutbound()
            outbound.writeImmutableBuffer(frame)
        }
        queued(frame.readableBytes)
    }

    /// Makes ``outbound`` ready for more frames; returns its writer index.
    private func startOutbound() -> Int {
        if outboundHandedOver {
            outboundHandedOver = false
            // Kept for the next flush when the socket took it (then nothing else holds it) and it is not large.
            if outbound.capacity > Self.outboundKeptBytes { outbound = ByteBuffer() } else { outbound.clear() }
        }
        return outbound.writerIndex
    }

    /// The most bytes of ``outbound``'s storage a session keeps between flushes: a large reply (a resume, a page of
    /// listings) is not held by an idle connection afterwards.
    static let outboundKeptBytes = 4 * 1024

    private func queued(_ bytes: Int) {
        unflushedBytes += bytes
        needsFlush = true
        // Unflushed writes count towards the outbound limit: flush once a quarter of it is queued, so that a big
        // task (a durable group of many events) cannot make a client that reads look slow.
        if unflushedBytes >= configuration.maxOutboundBytes / 4 {
            flushIfNeeded()
        }
        if outboundTaken > 0 { checkOutboundCap() }
        if !markedDirty, let loop, loop.delivering {
            markedDirty = true
            loop.markDirty(self)
        }
    }

    /// Hands the frames in ``outbound`` to the channel (not flushed); `promise` completes once they, and everything
    /// written before them, are on the socket.
    func writeOutbound(promise: EventLoopPromise<Void>? = nil) {
        if !outboundHandedOver, outbound.readableBytes > 0 {
            outboundHandedOver = true
            output.write(outbound, promise: promise)
        } else if let promise {
            // Nothing new since the last hand-over: an empty write, whose promise completes after the writes before it.
            output.write(ByteBuffer(), promise: promise)
        }
    }

    /// Writes an already-encoded frame from the fan-out; flushed once at the end of the loop's task (or of the
    /// current read).
    func enqueue(_ frame: ByteBuffer) {
        context?.eventLoop.assertInEventLoop()
        send(frame: frame)
    }

    /// Sends what was written since the last flush: to the socket itself when the channel holds nothing of this
    /// connection (``RawFrameWriter``), else (and whatever the socket did not take) through the channel.
    func flushIfNeeded() {
        guard startFlush() else { return }
        endFlush(sentAll: !outboundHandedOver && output.sendDirectly(&outbound))
    }

    /// Queues what was written since the last flush as one send of `batch` when it would go to the socket itself
    /// (``flushIfNeeded()``'s first choice); false, with nothing done, otherwise. ``finishFlush(sent:)`` follows
    /// once `batch` has made its sends, and nothing is written to the session in between.
    func queueFlush(in batch: SocketSendBatch) -> Bool {
        guard needsFlush, !outboundHandedOver, let fd = output.directDescriptor(for: outbound), startFlush() else {
            return false
        }
        _ = batch.add(fd: fd, outbound)
        return true
    }

    /// Ends a flush ``queueFlush(in:)`` queued, given what its send returned: as ``flushIfNeeded()`` after its own
    /// `send`, what the socket did not take goes through the channel.
    func finishFlush(sent: Int32) {
        if sent == SocketSendBatch.unknown {
            // How much of the stream went out is unknown: nothing more can be written to it that a client could
            // read right, so the connection ends here (the client reconnects and resumes with `since`).
            outbound = ByteBuffer()
            outboundHandedOver = false
            context?.channel.close(promise: nil)
            return
        }
        endFlush(sentAll: RawFrameWriter.took(Int(sent), of: &outbound))
    }

    /// Starts a flush when there is one to make: counts the bytes written since the last one as sent.
    private func startFlush() -> Bool {
        guard needsFlush, output.context != nil else { return false }
        needsFlush = false
        metrics.bytesOut.increment(by: unflushedBytes)
        unflushedBytes = 0
        return true
    }

    /// Ends a flush whose bytes all went to the socket (`sentAll`): the next frame clears the buffer (or lets a
    /// large one go) as after a hand-over; otherwise what is left of them goes through the channel.
    private func endFlush(sentAll: Bool) {
        if sentAll {
            outboundHandedOver = true
            return
        }
        writeOutbound()
        output.flush()
    }

    /// Sends a close frame and closes the connection once it is written (or after two seconds, for a client that
    /// does not read). Nothing more is written or read.
    func close(_ code: WebSocketErrorCode, _ reason: String) {
        guard let context, output.context != nil, machine.startClosing() else { return }
        let frame = ServerFrame.close(code, reason: reason)
        needsFlush = false
        let channel = context.channel
        let promise = context.eventLoop.makePromise(of: Void.self)
        writeOutbound()
        output.write(frame, promise: promise)
        output.flush()
        let timeout = context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        promise.futureResult.whenComplete { _ in
            timeout.cancel()
            channel.close(promise: nil)
        }
    }
}
