import GavelEngine
import Testing

@testable import GavelGateway
@testable import GavelJournal

/// `/metrics` as Prometheus reads it: every family with HELP and TYPE, the journal's counters and the process's.
@Suite struct MetricsExpositionTests {
    /// The exposition's lines, its sample values by name (labels included), and its HELP and TYPE lines by family.
    struct Parsed {
        var samples: [String: Double] = [:]
        var help: [String: String] = [:]
        var type: [String: String] = [:]

        init(_ bytes: [UInt8]) {
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
                if parts.first == "#", parts.count == 4, parts[1] == "HELP" {
                    help[parts[2]] = parts[3]
                } else if parts.first == "#", parts.count == 4, parts[1] == "TYPE" {
                    type[parts[2]] = parts[3]
                } else if let value = line.split(separator: " ").last.flatMap({ Double($0) }) {
                    samples[String(line[..<line.lastIndex(of: " ")!])] = value
                }
            }
        }

        /// The family a sample belongs to: its name without labels and without a histogram's suffix.
        func family(of sample: String) -> String {
            let name = String(sample.prefix { $0 != "{" })
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                let base = String(name.dropLast(suffix.count))
                if type[base] == "histogram" { return base }
            }
            return name
        }
    }

    @Test func everySampledFamilyHasHelpAndType() {
        let metrics = GatewayMetrics()
        metrics.slowConsumerCloses.increment()
        metrics.bytesOut.increment(by: 10)
        metrics.connections.increment()
        metrics.batchEntries.record(3)
        metrics.recordFsync(nanos: 150_000)
        metrics.attach(journal: JournalStats())
        let parsed = Parsed(metrics.exposition())
        #expect(parsed.samples.count > 20)
        for sample in parsed.samples.keys {
            let family = parsed.family(of: sample)
            #expect(parsed.help[family]?.isEmpty == false, "no HELP for \(family)")
            #expect(parsed.help[family] != family, "\(family) has no HELP text in GatewayMetrics.help")
            #expect(parsed.type[family] != nil, "no TYPE for \(family)")
        }
        #expect(parsed.type["gavel_fsync_seconds"] == "histogram")
        #expect(parsed.type["gavel_slow_consumer_closes_total"] == "counter")
        #expect(parsed.samples["gavel_slow_consumer_closes_total"] == 1)
    }

    @Test func journalCountersAreReadAtEachScrape() {
        let metrics = GatewayMetrics()
        let stats = JournalStats()
        #expect(Parsed(metrics.exposition()).samples["gavel_journal_fsyncs_total"] == nil)
        metrics.attach(journal: stats)
        stats.syncs.wrappingAdd(7, ordering: .relaxed)
        stats.snapshotFailures.wrappingAdd(2, ordering: .relaxed)
        stats.snapshotsMerged.wrappingAdd(1, ordering: .relaxed)
        stats.lastSnapshotNanos.store(1_500_000_000, ordering: .relaxed)
        stats.record(entries: 5, rawBytes: 100, frameBytes: 60, nanos: 0)
        let parsed = Parsed(metrics.exposition())
        #expect(parsed.samples["gavel_journal_fsyncs_total"] == 7)
        #expect(parsed.samples["gavel_snapshot_failures_total"] == 2)
        #expect(parsed.samples["gavel_snapshots_merged_total"] == 1)
        #expect(parsed.samples["gavel_last_snapshot_seconds"] == 1.5)
        #expect(parsed.samples["gavel_journal_entries_total"] == 5)
        #expect(parsed.samples["gavel_journal_frame_bytes_total"] == 60)
        #expect(parsed.type["gavel_snapshot_failures_total"] == "counter")
    }

    @Test func engineGaugesAreReadAtEachScrape() {
        let metrics = GatewayMetrics()
        let gauges = EngineGauges()
        #expect(Parsed(metrics.exposition()).samples["gavel_timers"] == nil)
        metrics.attach(engine: gauges)
        gauges.listings.store(3, ordering: .relaxed)
        gauges.rememberedRequestIDs.store(1_000_000, ordering: .relaxed)
        gauges.timers.store(42, ordering: .relaxed)
        gauges.settlements.store(7, ordering: .relaxed)
        let parsed = Parsed(metrics.exposition())
        #expect(parsed.samples["gavel_listings"] == 3)
        #expect(parsed.samples["gavel_remembered_request_ids"] == 1_000_000)
        #expect(parsed.samples["gavel_timers"] == 42)
        #expect(parsed.samples["gavel_settlements"] == 7 && parsed.type["gavel_settlements"] == "gauge")
        #expect(parsed.type["gavel_timers"] == "gauge")
    }

    @Test func processMetricsComeFromProc() {
        let parsed = Parsed(GatewayMetrics().exposition())
        let resident = parsed.samples["process_resident_memory_bytes"] ?? 0
        let virtual = parsed.samples["process_virtual_memory_bytes"] ?? 0
        let open = parsed.samples["process_open_fds"] ?? 0
        #expect(resident > 1_000_000)
        #expect(virtual >= resident)
        #expect(open >= 3)
        #expect((parsed.samples["process_max_fds"] ?? 0) >= open)
        #expect((parsed.samples["process_cpu_seconds_total"] ?? -1) > 0)
        // Started after 2020-01-01 and not in the future of the year 2100.
        #expect((1_577_836_800...4_102_444_800).contains(parsed.samples["process_start_time_seconds"] ?? 0))
        #expect(parsed.type["process_cpu_seconds_total"] == "counter")
    }

    @Test func wholeNumbersArePrintedWithoutAFraction() {
        #expect(ExpositionWriter.format(42) == "42")
        #expect(ExpositionWriter.format(0) == "0")
        #expect(ExpositionWriter.format(1.5) == "1.5")
    }
}
