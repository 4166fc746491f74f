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
        let (fitted, said) = try OpenFiles.fit(c, limit: 1_024)
        let clients = fitted.maxConnections + fitted.maxHandshakes
        #expect(clients + OpenFiles.reserved + c.maxAdminConnections == 1_024)
        #expect(fitted.maxHandshakes == 64 && fitted.maxConnections == 640)
        // One address may take a tenth of the connections and a sixteenth of the handshakes, as with the defaults.
        #expect(fitted.maxConnectionsPerAddress == 64 && fitted.maxAnonymousConnections == 64)
        #expect(fitted.maxHandshakesPerAddress == 4)
        #expect(fitted.maxConnectionsPerUser == c.maxConnectionsPerUser)
        #expect(said?.contains("--max-connections lowered from 10000 to 640") == true, "\(said ?? "")")
    }

    @Test func withoutAdminHTTPItsConnectionsAreNotReserved() throws {
        var c = GatewayConfiguration()
        c.adminPort = -1
        let (fitted, _) = try OpenFiles.fit(c, limit: 1_024)
        #expect(fitted.maxConnections + fitted.maxHandshakes + OpenFiles.reserved == 1_024)
    }

    @Test func aLimitWithNoRoomForClientsIsRefused() {
        #expect(throws: OpenFiles.TooLow.self) { try OpenFiles.fit(GatewayConfiguration(), limit: 300) }
    }
}
