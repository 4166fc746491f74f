import GavelWire
import Testing

@testable import GavelCore
@testable import GavelGateway

/// The order `my_settlements` lists settlements in is the order the engine created them, live and after a restore
/// from a snapshot or a replay of the journal, even for settlements made in one millisecond on listings whose ids
/// sort against that order.
struct SettlementOrderRestoreTests {
    /// Two markets whose ids sort against the order they trade in (`Zb` first, then `Aa`), and 30 one-unit buys that
    /// alternate between them in one millisecond, then 4 more a millisecond later.
    private static let lines: [String] = {
        var lines: [String] = []
        for listing in ["Zb", "Aa"] {
            lines.append(
                #"{"type":"open","id":"o\#(listing)","listing":"\#(listing)","seller":"sam","format":"market","at":0}"#)
            lines.append(
                #"{"type":"order","id":"s\#(listing)","listing":"\#(listing)","trader":"sue","side":"sell","price":100,"quantity":1000}"#
            )
        }
        for i in 0..<34 {
            let listing = i % 2 == 0 ? "Zb" : "Aa"
            let at = i < 30 ? 1000 : 1001
            lines.append(
                #"{"type":"order","id":"b\#(i)","listing":"\#(listing)","trader":"bob","side":"buy","price":100,"quantity":1,"tif":"ioc","at":\#(at)}"#
            )
        }
        return lines
    }()

    /// The settlement ids in creation order: `Zb:1`, `Aa:1`, `Zb:2`, ...
    private static let created = (0..<34).map { "\($0 % 2 == 0 ? "Zb" : "Aa"):\($0 / 2 + 1)" }

    /// Applies `lines` to `engine`; the events they made.
    @discardableResult
    private static func run(_ lines: [String], on engine: Engine) -> [Event] {
        var all: [Event] = []
        for line in lines {
            guard case .command(let command, let at) = CommandDecoder.decode(line: line) else {
                Issue.record("not a command: \(line)")
                continue
            }
            var events: [Event] = []
            if let at { _ = engine.advance(to: at, events: &events) }
            _ = engine.apply(command, events: &events)
            all += events
        }
        return all
    }

    /// Every settlement of `user` in `views`, page by page with `after`.
    private static func walk(_ views: SettlementViews, _ user: String, from after: String? = nil, limit: Int = 4)
        -> [String]
    {
        var seen: [String] = []
        var after = after
        while let page = views.page(user: user, state: nil, after: after, limit: limit) {
            seen += page.items.map(\.id)
            guard let next = page.next else { break }
            after = next
        }
        return seen
    }

    private static func views(loadedFrom engine: Engine) -> SettlementViews {
        var views = SettlementViews()
        views.load(engine.settlementsInCreationOrder, offers: engine.secondChanceOffers)
        return views
    }

    @Test func theOrderAndPagesAreTheSameLiveAfterARestoreFromASnapshotAndAfterAReplay() throws {
        let engine = Engine()
        var live = SettlementViews()
        for event in Self.run(Self.lines, on: engine) where SettlementViews.concerns(event.kind) { live.apply(event) }
        #expect(Self.walk(live, "bob") == Self.created)
        #expect(engine.settlementsInCreationOrder.map(\.id) == Self.created)

        let restored = try Engine.restore(from: engine.encodeState())
        #expect(!restored.settlementOrderDerived)
        #expect(restored.stateHash() == engine.stateHash())
        let replayed = Engine()
        Self.run(Self.lines, on: replayed)
        #expect(replayed.stateHash() == engine.stateHash())
        for recovered in [restored, replayed] {
            let views = Self.views(loadedFrom: recovered)
            #expect(Self.walk(views, "bob") == Self.created)
            #expect(Self.walk(views, "sue") == Self.created)
            // A client that read the first k before the restart and goes on with `after` sees each of the rest once.
            for k in 1..<Self.created.count {
                #expect(Self.walk(views, "bob", from: Self.created[k - 1], limit: 3) == Array(Self.created[k...]))
            }
        }

        // Settlements made after the restore follow the older ones, and the engines stay equal.
        let more = (34..<38).map {
            #"{"type":"order","id":"b\#($0)","listing":"\#($0 % 2 == 0 ? "Zb" : "Aa")","trader":"bob","side":"buy","price":100,"quantity":1,"tif":"ioc","at":1002}"#
        }
        var after = Self.views(loadedFrom: restored)
        for event in Self.run(more, on: restored) where SettlementViews.concerns(event.kind) { after.apply(event) }
        for event in Self.run(more, on: engine) where SettlementViews.concerns(event.kind) { live.apply(event) }
        #expect(restored.stateHash() == engine.stateHash())
        #expect(Self.walk(after, "bob") == Self.walk(live, "bob"))
        #expect(Self.walk(after, "bob").suffix(4) == ["Zb:18", "Aa:18", "Zb:19", "Aa:19"])
    }

    @Test func aStateWrittenBeforeSettlementsWereNumberedOrdersThemByTimeListingAndNumber() throws {
        let engine = Engine()
        Self.run(Self.lines, on: engine)
        engine.writesUnnumberedSettlements = true
        let old = engine.encodeState()
        engine.writesUnnumberedSettlements = false
        #expect(old != engine.encodeState())
        let restored = try Engine.restore(from: old)
        #expect(restored.settlementOrderDerived)
        // What the gateway rebuilt before: the first ms's by listing and number, then the next ms's.
        let byTime =
            (1...15).map { "Aa:\($0)" } + (1...15).map { "Zb:\($0)" } + ["Aa:16", "Aa:17", "Zb:16", "Zb:17"]
        #expect(restored.settlementsInCreationOrder.map(\.id) == byTime)
        // It is written numbered from then on, marked as derived (a replay of the journal from lsn 1 may number
        // them otherwise, so `gavel verify` compares no replay with it), and reads back the same.
        let again = try Engine.restore(from: restored.encodeState())
        #expect(again.settlementOrderDerived)
        #expect(again.settlementsInCreationOrder.map(\.id) == byTime)
        #expect(again.stateHash() == restored.stateHash())
        // Once the last settlement with a derived number has left memory (payments expired, then the retention),
        // the mark goes with it.
        var events: [Event] = []
        #expect(again.advance(to: 30 * 86_400_000, events: &events))
        #expect(again.settlementCount == 0)
        #expect(!again.settlementOrderDerived)
        #expect(!(try Engine.restore(from: again.encodeState())).settlementOrderDerived)
    }
}
