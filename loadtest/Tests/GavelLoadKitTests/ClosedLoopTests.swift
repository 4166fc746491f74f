import Foundation
import Testing

@testable import GavelLoadKit

/// A server frame: unmasked, FIN set, `opcode`, `payload` (lengths past 125 take the 16-bit form).
func serverFrame(_ opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
    var frame: [UInt8] = [0x80 | opcode]
    if payload.count < 126 {
        frame.append(UInt8(payload.count))
    } else {
        frame += [126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
    }
    return frame + payload
}

func textFrame(_ text: String) -> [UInt8] { serverFrame(0x1, Array(text.utf8)) }

/// Feeds `chunks` to one scanner, one read each, and collects what it finds.
func scanned(_ chunks: [[UInt8]]) -> [ResultScanner.Event] {
    var scanner = ResultScanner(capacity: 64)
    defer { scanner.deallocate() }
    var events: [ResultScanner.Event] = []
    for chunk in chunks {
        scanner.append(chunk)
        scanner.scan { events.append($0) }
    }
    return events
}

@Suite struct ClosedLoopOptionTests {
    @Test func inFlightMustBeOneTo4096AndWithRateIsPaced() {
        let closedLoop: (inout LoadConfiguration) -> Void = {
            $0.watchers = 0
            $0.inFlight = 16
        }
        #expect(problem(closedLoop) == nil)
        #expect(
            problem {
                closedLoop(&$0)
                $0.inFlight = 0
            }?.contains("--in-flight must be 1...4096") == true)
        #expect(
            problem {
                closedLoop(&$0)
                $0.inFlight = 5_000
            }?.contains("--in-flight") == true)
        #expect(
            problem {
                closedLoop(&$0)
                $0.rateGiven = true
            } == nil)
        var paced = LoadConfiguration()
        paced.inFlight = 16
        #expect(!paced.paced)
        paced.rateGiven = true
        #expect(paced.paced)
        paced.inFlight = nil
        #expect(!paced.paced)
    }

    @Test func theReportOfAPacedRunNamesItsRateAndInFlightAndHasATargetRate() throws {
        var c = LoadConfiguration()
        c.watchers = 0
        c.inFlight = 64
        c.rate = 50_000
        c.rateGiven = true
        var m = Measurements()
        m.sent = 1_000
        m.results = 1_000
        let report = Report(
            configuration: c, measurements: m, measuredSeconds: 10, connectionsHeld: 17, connectSeconds: 0.1)
        #expect(report.table.contains("paced at 50000/s (open loop), at most 64 in flight per connection"))
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
        #expect(object["in_flight"] as? Int == 64 && object["target_rate"] as? Int == 50_000)
    }

    @Test func inFlightGoesWithTheSteadyPresetWithoutWatchersFormatsOrIntervals() {
        let closedLoop: (inout LoadConfiguration) -> Void = {
            $0.watchers = 0
            $0.inFlight = 4
        }
        #expect(
            problem {
                closedLoop(&$0)
                $0.watchers = 1
            }?.contains("--watchers 0") == true)
        #expect(
            problem {
                closedLoop(&$0)
                $0.preset = .market
            }?.contains("--preset steady") == true)
        #expect(
            problem {
                closedLoop(&$0)
                $0.formats = try! FormatMix(parsing: "english=1,sealed=1")
            }?.contains("--formats") == true)
        #expect(
            problem {
                closedLoop(&$0)
                $0.reportSeconds = 5
            }?.contains("--report-seconds") == true)
    }

    @Test func aCPUListTakesNumbersAndRangesAndRefusesAnythingElseByName() throws {
        #expect(try CPUList(parsing: "1").cpus == [1])
        #expect(try CPUList(parsing: "0-1").cpus == [0, 1])
        #expect(try CPUList(parsing: "3,0-1,1").cpus == [0, 1, 3])
        for bad in ["", "a", "1-", "-1", "2-1", "1,,2", "0-1-2", "1.5", "99999"] {
            #expect(throws: LoadError.self, "\(bad)") { try CPUList(parsing: bad) }
            do { _ = try CPUList(parsing: bad) } catch { #expect(error.description.contains("--cpu"), "\(bad)") }
        }
    }

    @Test func aCPUThisProcessMayNotUseIsRefusedNamingTheOnesItMay() throws {
        #expect(problem { $0.cpus = try! CPUList(parsing: "0") } == nil)
        let refused = problem { $0.cpus = try! CPUList(parsing: "1023") }
        #expect(
            refused?.contains("--cpu 1023") == true && refused?.contains("may use CPUs") == true, "\(refused ?? "")")
    }

    @Test func theReportOfAClosedLoopNamesItsInFlightAndCPUPerResultAndHasNoTargetRate() throws {
        var c = LoadConfiguration()
        c.watchers = 0
        c.inFlight = 8
        var m = Measurements()
        m.sent = 1_000
        m.results = 1_000
        var report = Report(
            configuration: c, measurements: m, measuredSeconds: 10, connectionsHeld: 17, connectSeconds: 0.1)
        report.driverCPUSeconds = 0.5
        report.serverCPUSeconds = 2
        #expect(report.table.contains("closed loop, 8 in flight per connection"))
        #expect(
            report.table.contains("cpu: driver 500.000 µs a result (5.0 % of one core); server 2000.00 µs a result"))
        #expect(!report.table.contains("target ") && !report.table.contains("fan-out"))
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
        #expect(object["in_flight"] as? Int == 8 && object["target_rate"] is NSNull)
        #expect(
            object["driver_cpu_us_per_result"] as? Double == 500
                && object["server_cpu_us_per_result"] as? Double == 2_000)
    }
}

@Suite struct ResultScannerTests {
    @Test func resultsAreReadOutOfOrderWithTheirNumberOutcomeAndErrorCode() {
        let events = scanned([
            textFrame(#"{"type":"result","id":"rab1c3-17","ok":true,"price":100,"leading":true,"ts":1}"#)
                + textFrame(
                    #"{"type":"result","id":"rab1c3-5","ok":false,"error":"bid_too_low","message":"the minimum bid is 900","min_bid":900,"ts":2}"#
                )
                + textFrame(
                    #"{"type":"result","id":"rab1c3-9","ok":false,"error":"rate_limited","message":"over 50 messages a second; retry in 20 ms","ts":3}"#
                )
        ])
        #expect(
            events == [
                .result(number: 17, ok: true, error: nil, message: nil),
                .result(number: 5, ok: false, error: "bid_too_low", message: "the minimum bid is 900"),
                .result(
                    number: 9, ok: false, error: "rate_limited", message: "over 50 messages a second; retry in 20 ms"),
            ])
    }

    @Test func aFrameSplitAcrossReadsAtEveryByteIsReadOnceWhole() {
        let frames =
            textFrame(#"{"type":"result","id":"r1c0-123456","ok":true,"ts":1}"#)
            + textFrame(String(repeating: "x", count: 300)) + textFrame(#"{"type":"result","id":"r1c0-7","ok":true}"#)
        for cut in 1..<frames.count {
            let events = scanned([Array(frames[..<cut]), Array(frames[cut...])])
            #expect(
                events == [
                    .result(number: 123_456, ok: true, error: nil, message: nil),
                    .result(number: 7, ok: true, error: nil, message: nil),
                ], "cut at \(cut)")
        }
        // One byte a read.
        #expect(scanned(frames.map { [$0] }).count == 2)
    }

    @Test func eventsNoticesAndTheHelloBetweenResultsAreSkipped() {
        let events = scanned([
            textFrame(#"{"type":"hello","server_time":1,"principal":"ann","role":"bidder","limits":{},"ts":1}"#)
                + textFrame(
                    #"{"type":"notice","event":{"type":"outbid","listing":"L1","at":1,"bidder":"ann","price":1050},"user_seq":3,"ts":2}"#
                )
                + textFrame(#"{"type":"result","id":"r1c0-2","ok":true}"#)
                + textFrame(
                    #"{"type":"bid_placed","listing":"L1","seq":2,"at":1,"price":500,"leader":"ann","bids":1,"ts":1}"#)
                + textFrame(#"{"type":"result","id":"r1c0-1","ok":true}"#)
        ])
        #expect(
            events == [
                .result(number: 2, ok: true, error: nil, message: nil),
                .result(number: 1, ok: true, error: nil, message: nil),
            ])
    }

    @Test func aCloseFrameGivesItsCodeAndReasonAndAPingItsPayload() {
        let events = scanned([
            serverFrame(0x9, [1, 2, 3]) + serverFrame(0x8, [0x03, 0xF0] + Array("rate limit abuse".utf8))
        ])
        #expect(events == [.ping(payload: [1, 2, 3]), .close(code: 1008, reason: "rate limit abuse")])
        #expect(scanned([serverFrame(0x8, [])]) == [.close(code: 1005, reason: "")])
    }

    @Test func aResultWhoseIdIsNotTheDriversHasNoNumber() {
        #expect(
            scanned([textFrame(#"{"type":"result","id":"open-1","ok":true}"#)]) == [
                .result(number: nil, ok: true, error: nil, message: nil)
            ])
    }

    @Test func aBidFrameIsMaskedAndUnmasksToTheBidWithItsIdAndAmount() throws {
        var writer = FrameWriter(mask: 0xA1B2_C3D4)
        var out: [UInt8] = []
        let parts = ClosedLoop.ByteStrings(["r9c2-", "ld1-x-7", "load-bidder-x-2"])
        writer.appendBid(
            to: &out, idPrefix: parts[0], number: 40_961, listing: parts[1], bidder: parts[2], amount: 1_234_567_890)
        let expected =
            #"{"type":"bid","id":"r9c2-40961","listing":"ld1-x-7","bidder":"load-bidder-x-2","amount":1234567890}"#
        #expect(out[0] == 0x81 && out[1] == 0x80 | UInt8(expected.utf8.count))
        #expect(Array(out[2..<6]) == [0xA1, 0xB2, 0xC3, 0xD4])
        let payload = out[6...].enumerated().map { $0.element ^ out[2 + $0.offset % 4] }
        #expect(String(decoding: payload, as: UTF8.self) == expected)
        // A payload of 126 bytes or more takes the 16-bit length.
        out.removeAll()
        writer.appendFrame(opcode: 0x1, payload: Array(repeating: 0x20, count: 200), to: &out)
        #expect(out[1] == 0x80 | 126 && Int(out[2]) << 8 | Int(out[3]) == 200 && out.count == 4 + 4 + 200)
    }
}
