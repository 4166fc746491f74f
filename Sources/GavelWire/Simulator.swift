import GavelCore

/// Drives an ``Engine`` with JSON lines, as `gavel simulate` does: each input line is a command, an `advance`, or
/// invalid input, and produces the result and event lines it causes.
public final class Simulator {
    public let engine: Engine
    private var events: [Event] = []

    public init(engine: Engine = Engine()) {
        self.engine = engine
        events.reserveCapacity(64)
    }

    /// Processes one input line and calls `output` with each line it produces (without a newline). Blank lines
    /// produce nothing.
    public func process(line: String, output: ([UInt8]) -> Void) {
        if line.utf8.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
        process(CommandDecoder.decode(line: line), output: output)
    }

    /// Processes one decoded input.
    public func process(_ input: DecodedInput, output: ([UInt8]) -> Void) {
        events.removeAll(keepingCapacity: true)
        switch input {
        case .invalid(let id, let message):
            output(MessageEncoder.badRequest(id: id, message: message))
        case .advance(let at):
            guard engine.advance(to: at, events: &events) else {
                output(MessageEncoder.badRequest(id: nil, message: clockMessage(at)))
                return
            }
            for event in events where !event.kind.isInternal { output(MessageEncoder.event(event)) }
        case .command(let command, let at):
            if let at {
                guard engine.advance(to: at, events: &events) else {
                    output(MessageEncoder.badRequest(id: command.id, message: clockMessage(at)))
                    return
                }
                for event in events where !event.kind.isInternal { output(MessageEncoder.event(event)) }
                events.removeAll(keepingCapacity: true)
            }
            let result = engine.apply(command, events: &events)
            output(MessageEncoder.result(id: command.id, result))
            for event in events where !event.kind.isInternal { output(MessageEncoder.event(event)) }
        }
    }

    /// The closing `state_hash` line.
    public func stateHashLine() -> [UInt8] {
        var w = JSONObjectWriter()
        w.field("type", "state_hash")
        w.field("hash", engine.stateHash())
        return w.finish()
    }

    private func clockMessage(_ at: Millis) -> String {
        "at \(at) is earlier than the engine clock \(engine.now); time only moves forward"
    }
}
