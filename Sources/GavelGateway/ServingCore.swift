import GavelCore
import GavelEngine
import GavelJournal
import NIOCore

/// The durable core behind the gateway, wired the one way it is wired: recover the data directory, open its journal
/// after the recovered end, load the fan-out (views, settlements, the durable feed) from the recovered state, and
/// make the writer around the recovered engine, journaling through the journal and releasing every durable batch to
/// the fan-out.
///
/// `gavel serve` and the end-to-end tests both build it here, so no test runs a wiring of its own. The writer is
/// made, not started: the caller starts it (`gavel serve` through its service group).
public struct ServingCore {
    public let recovery: RecoveryReport
    public let journal: Journal
    public let fanOut: FanOut
    public let writer: Writer

    /// - Parameters:
    ///   - directory: the data directory, already claimed for writing by the caller.
    ///   - recovery: how to recover it (the engine settings for a new directory, truncation, progress lines).
    ///   - gateway: the history sizes of the fan-out and the limits of the durable feed.
    ///   - metrics: gets the journal's statistics and its `fdatasync` durations.
    public static func assemble(
        directory: DataDirectory, recovery options: RecoveryOptions = RecoveryOptions(),
        journal journalConfiguration: JournalConfiguration = JournalConfiguration(),
        writer writerConfiguration: WriterConfiguration = WriterConfiguration(),
        gateway: GatewayConfiguration, group: EventLoopGroup, metrics: GatewayMetrics,
        clock: EngineClock = SystemClock()
    ) throws -> ServingCore {
        let report = try Recovery.recover(directory, options: options)
        let journal = try Journal(
            directory: directory, configuration: journalConfiguration, recovery: report,
            syncObserver: { nanos in metrics.recordFsync(nanos: nanos) })
        metrics.attach(journal: journal.stats)
        let fanOut = FanOut(
            group: group, historyLimit: gateway.historyEvents, userHistoryLimit: gateway.userHistoryEvents,
            histories: try HistoryRings(historyBytes: gateway.historyBytes, userHistoryBytes: gateway.userHistoryBytes),
            batchesSends: gateway.ioUring, metrics: metrics)
        // The recovered state is all durable; read it before the writer starts.
        fanOut.load(PublicListingView.all(in: report.engine))
        fanOut.loadSettlements(report.engine.settlementsInCreationOrder, offers: report.engine.secondChanceOffers)
        fanOut.feed.configure(
            directory: directory, writtenEnd: journal.writtenEnd, engine: report.engine.configuration,
            lastLSN: report.lastLSN, chain: report.chain,
            maxCatchUps: gateway.maxFeedCatchups, stallTimeoutMs: gateway.feedStallTimeoutMs)
        let writer = Writer(
            configuration: writerConfiguration, engine: report.engine, lastLSN: report.lastLSN, sink: journal,
            snapshots: journal, clock: clock, observer: fanOut)
        metrics.attach(engine: writer.gauges)
        return ServingCore(recovery: report, journal: journal, fanOut: fanOut, writer: writer)
    }
}
