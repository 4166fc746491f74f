import Testing

@testable import GavelGateway

/// The connection caps fit the open-file limit: clients at every cap leave the journal, snapshots and admin HTTP
/// their descriptors, and the caps within each total keep their share.
@Suite struct OpenFileLimitTests {
    @Test func capsThatFitTheLimitAreKept() throws {
        let c = GatewayConfiguration()
        let (fitted, said) = try OpenFiles.fit(c, limit: 20_000)
        #expect(said == nil)
        #expect(fitted.maxConnections == c.maxConnections && fitted.maxHandshakes == c.maxHandshakes)
        #expect(fitted.maxConnectionsPerAddress == c.maxConnectionsPerAddress)
    }

    @Test func capsAboveALowLimitAreLoweredToLeaveTheReserveAndKeepTheirProportions() throws {
        var c = GatewayConfiguration()
        c.adminPort = 9090
        let (fitted, said) = try OpenFiles.fit(c, limit: 1_024, eventLoops: 2)
        let kept = OpenFiles.reserved + c.maxAdminConnections + 2 * OpenFiles.perEventLoop
        #expect(fitted.maxConnections + fitted.maxHandshakes + kept == 1_024)
        #expect(fitted.maxHandshakes == 63 && fitted.maxConnections == 633)
        // One address may take a tenth of the connections and a sixteenth of the handshakes, as with the defaults.
        #expect(fitted.maxConnectionsPerAddress == 63 && fitted.maxAnonymousConnections == 63)
        #expect(fitted.maxHandshakesPerAddress == 4)
        #expect(fitted.maxConnectionsPerUser == c.maxConnectionsPerUser)
        #expect(said?.contains("--max-connections lowered from 10000 to 633") == true, "\(said ?? "")")
        #expect(said?.contains("keeping \(kept) descriptors") == true, "\(said ?? "")")
    }

    /// Every event loop holds descriptors of its own: two hundred of them leave a limit of 1,024 no room for
    /// clients, and the start is refused rather than the journal meeting `EMFILE` later.
    @Test func theEventLoopsOwnDescriptorsAreKeptToo() throws {
        let c = GatewayConfiguration()
        let (few, _) = try OpenFiles.fit(c, limit: 1_024, eventLoops: 1)
        let (more, _) = try OpenFiles.fit(c, limit: 1_024, eventLoops: 50)
        #expect(
            few.maxConnections + few.maxHandshakes - more.maxConnections - more.maxHandshakes == 49
                * OpenFiles.perEventLoop)
        #expect(throws: OpenFiles.TooLow.self) { try OpenFiles.fit(c, limit: 1_024, eventLoops: 200) }
    }

    @Test func withoutAdminHTTPItsConnectionsAreNotReserved() throws {
        var c = GatewayConfiguration()
        c.adminPort = -1
        let (fitted, _) = try OpenFiles.fit(c, limit: 1_024, eventLoops: 1)
        #expect(fitted.maxConnections + fitted.maxHandshakes + OpenFiles.reserved + OpenFiles.perEventLoop == 1_024)
    }

    @Test func aLimitWithNoRoomForClientsIsRefused() {
        #expect(throws: OpenFiles.TooLow.self) { try OpenFiles.fit(GatewayConfiguration(), limit: 300) }
    }
}
