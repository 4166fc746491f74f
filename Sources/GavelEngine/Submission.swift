import GavelCore

/// How a submitted command's result comes back. Called once, after the batch holding the command is durable, on
/// the thread that releases batches; it must not block.
public typealias ResultHandler = @Sendable (CommandResult, _ lsn: UInt64) -> Void

/// A command on its way to the writer: the envelope that links into a listing's queue.
public final class Submission: MPSCNode, @unchecked Sendable {
    public let command: Command
    /// Computed by the producer that makes the submission, so the writer does not.
    let digest: CommandDigest
    let handler: ResultHandler?

    public init(_ command: Command, handler: ResultHandler?) {
        self.command = command
        self.digest = CommandDigest(command)
        self.handler = handler
    }
}
