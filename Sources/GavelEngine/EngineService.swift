import Logging
import ServiceLifecycle

/// Runs a ``Writer`` as a swift-service-lifecycle `Service`: starts the writer thread, and on graceful shutdown
/// stops accepting commands, drains what is queued, flushes the sink, and stops.
public struct EngineService: Service {
    public let writer: Writer
    private let logger: Logger

    public init(writer: Writer, logger: Logger) {
        self.writer = writer
        self.logger = logger
    }

    public func run() async throws {
        writer.start()
        logger.info("engine writer started")
        try? await gracefulShutdown()
        logger.info("engine draining")
        await writer.shutdown()
        logger.info("engine stopped")
    }
}
