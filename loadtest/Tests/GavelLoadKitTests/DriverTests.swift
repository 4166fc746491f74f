import Crypto
import Foundation
import GavelCore
import Testing

@testable import GavelLoadKit

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// What `validate()` says about the default configuration after `change`; nil when it passes.
func problem(_ change: (inout LoadConfiguration) -> Void) -> String? {
    var c = LoadConfiguration()
    change(&c)
    do {
        try c.validate()
        return nil
    } catch { return error.description }
}

@Suite struct ConfigurationTests {
    @Test func aURLGivesHostPortAndPath() throws {
        var c = LoadConfiguration()
        try c.setURL("ws://127.0.0.2:9000/ws")
        #expect(c.host == "127.0.0.2" && c.port == 9000 && c.path == "/ws")
        try c.setURL("ws://localhost:81")
        #expect(c.host == "localhost" && c.port == 81 && c.path == "/ws")
    }

    @Test func aURLThatIsNotPlainWebSocketOrHasABadPortIsRefusedByName() {
        var c = LoadConfiguration()
        #expect(throws: LoadError.self) { try c.setURL("http://127.0.0.1:8080/ws") }
        #expect(throws: LoadError.self) { try c.setURL("wss://127.0.0.1:8080/ws") }
        #expect(throws: LoadError.self) { try c.setURL("ws://127.0.0.1:70000/ws") }
        #expect(throws: LoadError.self) { try c.setURL("ws://:80/ws") }
    }

    @Test func outOfRangeOptionsAreRefusedWithTheOptionNamed() {
        #expect(problem { _ in } == nil)
        #expect(problem { $0.rate = 0 }?.contains("--rate") == true)
        #expect(problem { $0.connections = 0 }?.contains("--connections") == true)
        #expect(problem { $0.listings = 0 }?.contains("--listings") == true)
        #expect(problem { $0.zipf = -1 }?.contains("--zipf") == true)
        #expect(problem { $0.zipf = .nan }?.contains("--zipf") == true)
        #expect(
            problem {
                $0.warmupSeconds = 20
                $0.durationSeconds = 10
            }?.contains("--warmup") == true)
        #expect(problem { $0.sourceAddresses = 300 }?.contains("--source-addresses") == true)
    }

    @Test func theHotPresetIsOneListingWithManyWatchers() {
        let c = LoadConfiguration.defaults(for: .hot)
        #expect(c.listings == 1 && c.watchers >= 100 && c.preset == .hot)
    }
}

@Suite struct SamplingTests {
    @Test func zipfFavoursLowRanksAndStaysInRange() {
        let sampler = ZipfSampler(count: 100, exponent: 1.0)
        var rng = SplitMix64(seed: 7)
        var counts = [Int](repeating: 0, count: 100)
        for _ in 0..<50_000 { counts[sampler.next(using: &rng)] += 1 }
        // Zipf(1) over 100: rank 1 has 1/H(100) ≈ 19 % of the draws, rank 10 about 1.9 %.
        #expect(counts[0] > 8_500 && counts[0] < 10_800)
        #expect(counts[0] > counts[9] * 5)
        #expect(counts.reduce(0, +) == 50_000)
    }

    @Test func exponentZeroIsUniform() {
        let sampler = ZipfSampler(count: 10, exponent: 0)
        var rng = SplitMix64(seed: 3)
        var counts = [Int](repeating: 0, count: 10)
        for _ in 0..<20_000 { counts[sampler.next(using: &rng)] += 1 }
        #expect(counts.allSatisfy { $0 > 1_700 && $0 < 2_300 })
    }

    @Test func theSameSeedDrawsTheSameStream() {
        let sampler = ZipfSampler(count: 1_000, exponent: 1.2)
        var a = SplitMix64(seed: 99)
        var b = SplitMix64(seed: 99)
        #expect((0..<100).map { _ in sampler.next(using: &a) } == (0..<100).map { _ in sampler.next(using: &b) })
    }
}

@Suite struct RecordingTests {
    @Test func warmUpIsNotCountedAndLatencyRunsFromTheIntendedTime() {
        let recorder = Recorder(measureFrom: 1_000_000_000)
        recorder.sent(intended: 500_000_000)
        recorder.result(intended: 500_000_000, received: 600_000_000, error: nil)
        recorder.sent(intended: 1_000_000_000)
        // Sent late by the driver: latency still counts from the intended time.
        recorder.result(intended: 1_000_000_000, received: 1_003_000_000, error: nil)
        recorder.sent(intended: 1_100_000_000)
        recorder.result(intended: 1_100_000_000, received: 1_100_500_000, error: "bid_too_low")
        recorder.delivered(intended: 1_100_000_000, received: 1_102_000_000)
        recorder.delivered(intended: nil, received: 1_102_000_000)
        let m = recorder.snapshot
        #expect(m.sent == 2 && m.results == 2)
        #expect(m.errors == ["bid_too_low": 1])
        #expect(m.ack.totalCount == 2)
        #expect(m.ack.valuesAreEquivalent(m.ack.max, 3_000))
        #expect(m.ack.valuesAreEquivalent(m.ack.min, 500))
        #expect(m.deliveries == 1 && m.fanOut.valuesAreEquivalent(m.fanOut.max, 2_000))
    }

    @Test func theProgressWindowResetsEachTimeItIsRead() {
        let recorder = Recorder(measureFrom: 0)
        for i in 0..<100 { recorder.result(intended: 0, received: UInt64(i + 1) * 10_000, error: nil) }
        let first = recorder.takeWindow()
        #expect(first.count == 100)
        #expect(first.p99 >= 980 && first.p99 <= 1_000)
        #expect(first.max >= 1_000 && first.max <= 1_010, "the largest, 1,000 µs, within the histogram's precision")
        #expect(recorder.takeWindow().count == 0)
    }
}

@Suite struct ReportTests {
    func sampleReport() -> Report {
        let recorder = Recorder(measureFrom: 0)
        for i in 0..<1_000 {
            recorder.sent(intended: 0)
            recorder.result(
                intended: 0, received: UInt64(i) * 1_000 + 500_000, error: i % 100 == 0 ? "rate_limited" : nil)
            recorder.delivered(intended: 0, received: UInt64(i) * 2_000 + 700_000)
        }
        recorder.closed(code: 1013)
        var c = LoadConfiguration()
        c.durationSeconds = 2
        return Report(
            configuration: c, measurements: recorder.snapshot, measuredSeconds: 2, connectionsHeld: 33,
            connectSeconds: 0.5)
    }

    @Test func theJSONReportHasRatesErrorsAndPercentiles() throws {
        let json = sampleReport().json
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["results"] as? Int == 1_000)
        #expect(object["achieved_rate"] as? Double == 500)
        #expect((object["errors"] as? [String: Int]) == ["rate_limited": 10])
        #expect((object["closed_by_server"] as? [String: Int]) == ["1013": 1])
        let ack = try #require(object["ack_latency"] as? [String: Any])
        for key in ["p50_us", "p90_us", "p99_us", "p99.9_us", "max_us", "count"] { #expect(ack[key] != nil, "\(key)") }
        let p50 = try #require(ack["p50_us"] as? Int)
        #expect(p50 >= 990 && p50 <= 1_010)
        let fanout = try #require(object["fanout_latency"] as? [String: Any])
        #expect(fanout["count"] as? Int == 1_000)
    }

    @Test func theTableNamesEveryFigure() {
        let table = sampleReport().table
        for text in ["results/s", "rate_limited 10", "33 held", "1013×1", "ack", "fan-out", "p99.9"] {
            #expect(table.contains(text), "\(text)")
        }
    }

    @Test func thePlotIsWellFormedSVGWithBothCurves() throws {
        let svg = sampleReport().svg
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "the SVG parses as XML")
        #expect(svg.components(separatedBy: "<polyline").count == 3)
    }

    @Test func thePercentileDistributionIsHdrHistogramText() {
        let text = sampleReport().percentileDistribution()
        #expect(text.contains("Value") && text.contains("Percentile") && text.contains("#[Mean"))
    }
}

@Suite struct TokenTests {
    @Test func aMintedTokenIsHS256OverHeaderAndClaims() throws {
        let token = Token.mint(
            secret: "k", subject: "alice", role: "bidder", expires: Date(timeIntervalSince1970: 2_000_000_000))
        let parts = token.split(separator: ".").map(String.init)
        #expect(parts.count == 3)
        func decode(_ part: String) -> String {
            var base64 = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while base64.count % 4 != 0 { base64 += "=" }
            return String(decoding: Data(base64Encoded: base64) ?? Data(), as: UTF8.self)
        }
        #expect(decode(parts[0]).contains(#""alg":"HS256""#))
        #expect(decode(parts[1]) == #"{"sub":"alice","role":"bidder","exp":2000000000}"#)
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data((parts[0] + "." + parts[1]).utf8), using: SymmetricKey(data: Data("k".utf8)))
        #expect(Token.base64URL(Data(mac)) == parts[2])
    }
}

@Suite struct ScanTests {
    @Test func fieldsAreReadFromCompactServerJSON() {
        let line = #"{"type":"result","id":"b17","ok":false,"error":"bid_too_low","min_bid":1250,"ts":1}"#
        #expect(Scan.string("type", in: line[...].utf8) == "result")
        #expect(Scan.string("id", in: line[...].utf8) == "b17")
        #expect(Scan.string("error", in: line[...].utf8) == "bid_too_low")
        #expect(Scan.integer("min_bid", in: line[...].utf8) == 1_250)
        #expect(Scan.string("listing", in: line[...].utf8) == nil)
        #expect(Scan.integer("bids", in: line[...].utf8) == nil)
    }
}

@Suite struct PresetTests {
    @Test func theNewPresetsSetTheirScenario() {
        let connections = LoadConfiguration.defaults(for: .connections)
        #expect(connections.watchers == 10_000 && connections.rate <= 20)
        let market = LoadConfiguration.defaults(for: .market)
        #expect(market.listings <= 10 && market.connections >= 2)
        let soak = LoadConfiguration.defaults(for: .soak)
        #expect(soak.durationSeconds == 600 && soak.rate < LoadConfiguration().rate)
    }

    @Test func manyConnectionsSpreadOverMoreSourceAddresses() {
        var c = LoadConfiguration.defaults(for: .connections)
        #expect(c.effectiveSourceAddresses == 1)
        c.watchers = 60_000
        #expect(c.effectiveSourceAddresses == 3)
        c.sourceAddresses = 8
        #expect(c.effectiveSourceAddresses == 8)
    }

    @Test func theNewOptionsAreRefusedWithTheirNames() {
        #expect(problem { $0.serverPID = 0 }?.contains("--server-pid") == true)
        #expect(problem { $0.sampleSeconds = 0 }?.contains("--sample-seconds") == true)
        #expect(problem { $0.sampleSeconds = .nan }?.contains("--sample-seconds") == true)
        #expect(problem { $0.preset = .soak }?.contains("--server-pid") == true)
        #expect(
            problem {
                $0.preset = .soak
                $0.serverPID = 1
            } == nil)
        #expect(
            problem {
                $0.preset = .market
                $0.broadcast = true
            }?.contains("--broadcast") == true)
        for bad in ["127.0.0.1:9090", "https://127.0.0.1:9090", "http://127.0.0.1", "http://:9090", "http://h:0"] {
            #expect(throws: LoadError.self, "\(bad)") { try AdminURL(bad) }
            do { _ = try AdminURL(bad) } catch { #expect(error.description.contains("--admin-url")) }
        }
        let admin = try? AdminURL("http://127.0.0.1:9090")
        #expect(admin == AdminURL?.some(try! AdminURL("http://127.0.0.1:9090/metrics")))
        #expect(admin?.path == "/metrics" && admin?.port == 9090)
    }
}

@Suite struct MemoryTests {
    @Test func residentMemoryIsReadFromProcStatusAndFromMetrics() {
        let status = "Name:\tgavel\nVmPeak:\t  99999 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
        #expect(MemoryProbe.residentBytes(status: status) == 40_960 * 1_024)
        #expect(MemoryProbe.residentBytes(status: "Name:\tx\n") == nil)
        let metrics =
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes_other 1\nprocess_resident_memory_bytes 3.2e+07\n"
        #expect(MemoryProbe.residentBytes(metrics: metrics) == 32_000_000)
        #expect(MemoryProbe.residentBytes(metrics: "gavel_connections 3\n") == nil)
    }

    @Test func ownProcessMemoryCanBeRead() throws {
        var c = LoadConfiguration()
        c.serverPID = getpid()
        let bytes = try #require(MemoryProbe(configuration: c)).residentBytes()
        #expect(bytes > 1_000_000)
    }

    @Test func growthIsLastMinusFirstAndTheSlopeIsPerMinute() throws {
        // 1 MiB every 10 s, with noise that is symmetric about the middle sample (no slope of its own): 6 MiB a
        // minute, which the first and last samples alone would also give.
        let noise: [Int64] = [0, 300_000, -300_000, 0, -300_000, 300_000, 0]
        let trend = MemoryTrend(
            samples: noise.enumerated().map { i, n in
                (Double(i * 10), UInt64(Int64(50 << 20) + Int64(i) * (1 << 20) + n))
            })
        #expect(trend.growth == 6 << 20)
        let slope = try #require(trend.slopePerMinute)
        #expect(abs(slope - Double(6 << 20)) < 1_000)
    }

    @Test func aFlatOrShrinkingTrendAndTooFewSamples() throws {
        #expect(MemoryTrend().growth == nil && MemoryTrend().slopePerMinute == nil)
        #expect(MemoryTrend(samples: [(0, 5)]).slopePerMinute == nil)
        #expect(MemoryTrend(samples: [(3, 5), (3, 9)]).slopePerMinute == nil, "no time between the samples")
        let flat = MemoryTrend(samples: (0..<5).map { (Double($0 * 10), 1_000) })
        #expect(flat.growth == 0 && flat.slopePerMinute == 0)
        let shrinking = MemoryTrend(samples: [(0, 2_000_000), (60, 1_000_000)])
        #expect(shrinking.growth == -1_000_000)
        #expect(abs(try #require(shrinking.slopePerMinute) + 1_000_000) < 0.001)
    }

    @Test func theReportShowsMemoryPerConnectionAndGrowth() throws {
        var report = Report(
            configuration: LoadConfiguration(), measurements: Measurements(), measuredSeconds: 60,
            connectionsHeld: 1_000, connectSeconds: 1)
        report.memoryBefore = 30 << 20
        report.memoryConnected = (30 << 20) + 5_120_000
        report.memory = MemoryTrend(samples: [(0, 40 << 20), (60, 41 << 20)])
        #expect(report.memoryPerConnection == 5_120)
        #expect(report.table.contains("5.0 KB a connection"))
        #expect(report.table.contains("+1.0 MB") && report.table.contains("+1024.0 KB/min"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
        #expect(object["memory_per_connection_bytes"] as? Double == 5_120)
        let memory = try #require(object["memory"] as? [String: Any])
        #expect(memory["growth_bytes"] as? Int == 1 << 20)
        #expect(memory["slope_bytes_per_min"] as? Double == Double(1 << 20))
        #expect((memory["samples"] as? [Any])?.count == 2)
    }
}

@Suite struct FormatMixTests {
    /// What `FormatMix(parsing:)` says about `text`; nil when it parses.
    func refusal(_ text: String) -> String? {
        do {
            _ = try FormatMix(parsing: text)
            return nil
        } catch { return error.description }
    }

    @Test func goodMixesParseIntoWeightsByFormat() throws {
        let mix = try FormatMix(parsing: "english=80,sealed=10,dutch=10")
        #expect(mix.weights.map(\.format) == [.english, .sealed, .dutch])
        #expect(mix.weights.map(\.weight) == [80, 10, 10])
        #expect(mix.description == "english=80,sealed=10,dutch=10")
        // Any order, spaces around the parts, and a zero weight beside a positive one.
        let reordered = try FormatMix(parsing: "dutch = 1, english=3,sealed=0")
        #expect(reordered.description == "english=3,sealed=0,dutch=1")
        #expect(try FormatMix(parsing: "english=100") == .englishOnly)
        #expect(try FormatMix(parsing: "sealed=1").weights.map(\.format) == [.sealed])
        #expect(LoadConfiguration().formats == .englishOnly)
        #expect(LoadConfiguration().formats.description == "english=100")
    }

    @Test func badMixesAreRefusedNamingTheOptionAndTheFormats() {
        let unknown = refusal("english=50,vickrey=50")
        #expect(unknown?.contains("--formats") == true && unknown?.contains("vickrey") == true)
        #expect(unknown?.contains("english, sealed, dutch") == true)
        #expect(refusal("market=10")?.contains("english, sealed, dutch") == true)
        let duplicate = refusal("english=50,sealed=10,english=40")
        #expect(duplicate?.contains("--formats") == true && duplicate?.contains("twice") == true)
        let zero = refusal("english=0,sealed=0")
        #expect(zero?.contains("--formats") == true && zero?.contains("add up to 0") == true)
        let negative = refusal("english=100,dutch=-5")
        #expect(negative?.contains("--formats") == true && negative?.contains("dutch") == true)
        for malformed in ["", "english", "english=", "english=ten", "english=1.5", "english=80,", "=80", "a=1=2"] {
            #expect(refusal(malformed)?.contains("--formats") == true, "\(malformed)")
        }
    }

    @Test func aMixOtherThanEnglishOnlyGoesWithTheSteadyPresetOnly() throws {
        let mix = try FormatMix(parsing: "english=60,sealed=20,dutch=20")
        #expect(problem { $0.formats = mix } == nil)
        #expect(
            problem {
                $0.preset = .market
                $0.formats = mix
            }?.contains("--formats") == true)
        #expect(
            problem {
                $0.broadcast = true
                $0.formats = mix
            }?.contains("--formats") == true)
    }

    @Test func theDrawIsDeterministicBySeedAndFollowsTheWeights() throws {
        let mix = try FormatMix(parsing: "english=60,sealed=20,dutch=20")
        let draw = mix.draw(count: 10_000, seed: 42)
        #expect(draw == mix.draw(count: 10_000, seed: 42))
        #expect(draw != mix.draw(count: 10_000, seed: 43))
        // The first listings' formats do not depend on how many listings there are.
        #expect(Array(draw.prefix(100)) == mix.draw(count: 100, seed: 42))
        let english = draw.filter { $0 == .english }.count
        let sealed = draw.filter { $0 == .sealed }.count
        let dutch = draw.filter { $0 == .dutch }.count
        #expect(english > 5_700 && english < 6_300, "\(english)")
        #expect(sealed > 1_800 && sealed < 2_200, "\(sealed)")
        #expect(dutch > 1_800 && dutch < 2_200, "\(dutch)")
        // A zero weight is never drawn; the default mix is english only.
        #expect(!(try FormatMix(parsing: "english=1,sealed=0,dutch=1")).draw(count: 1_000, seed: 1).contains(.sealed))
        #expect(FormatMix.englishOnly.draw(count: 1_000, seed: 9).allSatisfy { $0 == .english })
    }

    @Test func theReportShowsTheMix() throws {
        var c = LoadConfiguration()
        c.formats = try FormatMix(parsing: "english=80,sealed=10,dutch=10")
        let report = Report(
            configuration: c, measurements: Measurements(), measuredSeconds: 1, connectionsHeld: 1, connectSeconds: 1)
        #expect(report.table.contains("formats english=80,sealed=10,dutch=10"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
        #expect((object["formats"] as? [String: Int]) == ["english": 80, "sealed": 10, "dutch": 10])
        let market = Report(
            configuration: .defaults(for: .market), measurements: Measurements(), measuredSeconds: 1,
            connectionsHeld: 1, connectSeconds: 1)
        #expect(!market.table.contains("formats"))
    }
}

@Suite struct SoakRateTests {
    @Test func theSoakRunsAtTheGivenFractionOfTheMeasuredMaximum() throws {
        #expect(try LoadConfiguration.soakRate(maximum: 10_000, fraction: 0.5) == 5_000)
        #expect(try LoadConfiguration.soakRate(maximum: 10_000, fraction: 1) == 10_000)
        #expect(try LoadConfiguration.soakRate(maximum: 3, fraction: 0.1) == 1)
    }

    @Test func aFractionOutsideZeroToOneOrANonPositiveMaximumIsRefusedByName() {
        for (maximum, fraction, option) in [(100, 0.0, "--fraction"), (100, 1.5, "--fraction"), (0, 0.5, "--max-rate")]
        {
            do {
                _ = try LoadConfiguration.soakRate(maximum: maximum, fraction: fraction)
                Issue.record("accepted \(maximum) × \(fraction)")
            } catch { #expect(error.description.contains(option)) }
        }
    }
}

@Suite struct ExistingListingsTests {
    @Test func existingIsRefusedWithBroadcastWithAMixAndAPrefixWithoutItOrOutsideTheIdAlphabet() {
        #expect(problem { $0.existing = true } == nil)
        #expect(
            problem {
                $0.existing = true
                $0.existingPrefix = "L1:a.b_c-"
            } == nil)
        #expect(
            problem {
                $0.existing = true
                $0.broadcast = true
            }?.contains("--broadcast") == true)
        #expect(
            problem {
                $0.existing = true
                $0.formats = try! FormatMix(parsing: "english=1,sealed=1")
            }?.contains("--formats") == true)
        #expect(problem { $0.existingPrefix = "L" }?.contains("--existing-prefix goes with --existing") == true)
        for bad in ["", "a b", String(repeating: "x", count: 65), "é"] {
            #expect(
                problem {
                    $0.existing = true
                    $0.existingPrefix = bad
                }?.contains("--existing-prefix must be") == true, "\(bad)")
        }
    }

    func item(
        _ id: String, format: String = "english", status: String = "open", price: Int? = 500, bids: Int? = 3,
        opensAt: Int64 = 1_000, closesAt: Int64? = 100_000
    ) -> [String: Any] {
        [
            "listing": id, "format": format, "status": status, "price": price.map { $0 as Any } ?? NSNull(),
            "bids": bids.map { $0 as Any } ?? NSNull(), "opens_at": opensAt,
            "closes_at": closesAt.map { $0 as Any } ?? NSNull(),
        ]
    }

    @Test func selectionTakesOpenListingsOfTheFormatThatStayOpenThroughTheRun() {
        var selection = ListingSet.Selection(
            format: "english", prefix: nil, serverTime: 5_000, openUntil: 50_000, limit: 10)
        selection.take([
            item("A", price: 700, bids: 4),
            item("B", format: "sealed"),
            item("C", status: "closed"),
            item("D", closesAt: 49_999),  // closes within the run
            item("E", opensAt: 6_000),  // not open yet
            item("F", price: 100, bids: 0, closesAt: nil),  // open until cancelled
        ])
        #expect(selection.picked.map(\.id) == ["A", "F"] && selection.skipped == 2 && !selection.done)
        let set = selection.listings()
        #expect(set.ids == ["A", "F"] && set.index["F"] == 1 && set.formats == [.english, .english])
        // The first bid is a whole spacing above the price, and the spacing is twice the ladder's top step.
        #expect(set.firstAmount == [700 + 20_000, 100 + 20_000] && set.spacing == 20_000)
        #expect(set.baseBids == [4, 0] && set.skipped == 2)
    }

    @Test func selectionStopsAtTheLimitAndPastThePrefix() {
        var limited = ListingSet.Selection(format: "english", prefix: nil, serverTime: 5_000, openUntil: 0, limit: 2)
        limited.take([item("A"), item("B"), item("C")])
        #expect(limited.picked.map(\.id) == ["A", "B"] && limited.done)

        var prefixed = ListingSet.Selection(format: "english", prefix: "L1", serverTime: 5_000, openUntil: 0, limit: 10)
        prefixed.take([item("L0"), item("L1"), item("L10"), item("L1x")])
        #expect(prefixed.picked.map(\.id) == ["L1", "L10", "L1x"] && !prefixed.done)
        prefixed.take([item("L2"), item("L1y")])
        #expect(prefixed.picked.map(\.id) == ["L1", "L10", "L1x"] && prefixed.done)

        var market = ListingSet.Selection(format: "market", prefix: nil, serverTime: 5_000, openUntil: 0, limit: 10)
        market.take([item("M1", format: "market", price: nil, bids: nil), item("E1")])
        #expect(market.picked.map(\.id) == ["M1"])
    }

    @Test func theFirstPageStartsJustBeforeThePrefix() {
        #expect(ListingSet.Selection.firstAfter(prefix: nil) == nil)
        #expect(ListingSet.Selection.firstAfter(prefix: "L") == nil)
        #expect(ListingSet.Selection.firstAfter(prefix: "ld7-") == "ld7")
        // Every id with the prefix sorts after it.
        for id in ["ld7-", "ld7-0", "ld7-zz"] { #expect(id > "ld7") }
    }

    @Test func openedListingsKeepTheirNamesAndTheDefaultLadderSpacing() {
        let set = ListingSet.opened(count: 3, formats: [.english, .sealed, .dutch]) { "x-\($0)" }
        #expect(set.ids == ["x-0", "x-1", "x-2"] && set.index["x-2"] == 2)
        #expect(set.firstAmount == [1_000, 1_000, 1_000] && set.spacing == 10_000 && set.baseBids == [0, 0, 0])
    }

    @Test func theReportSaysTheListingsAreExisting() throws {
        var c = LoadConfiguration()
        c.existing = true
        c.listings = 7
        var report = Report(
            configuration: c, measurements: Recorder().snapshot, measuredSeconds: 1, connectionsHeld: 1,
            connectSeconds: 1)
        #expect(report.table.contains("7 existing listings,") && !report.table.contains("formats"))
        report.existingSkipped = 3
        #expect(report.table.contains("7 existing listings (3 more left out: they close or open within the run)"))
        let json = try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any]
        #expect(json?["existing"] as? Bool == true && json?["formats"] == nil)
        #expect(json?["existing_skipped"] as? Int == 3)
    }
}
