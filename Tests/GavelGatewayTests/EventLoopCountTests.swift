import Testing

@testable import GavelGateway

/// The default number of event loops follows the cores the process may use and leaves two to the writer and the
/// journal once there are enough of them.
@Suite struct EventLoopCountTests {
    @Test func smallMachinesGiveEveryCoreToTheLoopsAndBigOnesKeepTwoForTheWriterAndTheJournal() {
        #expect(GatewayConfiguration.defaultEventLoops(allowedCPUs: 0) == 1)
        #expect(GatewayConfiguration.defaultEventLoops(allowedCPUs: 1) == 1)
        #expect(GatewayConfiguration.defaultEventLoops(allowedCPUs: 2) == 2)
        #expect(GatewayConfiguration.defaultEventLoops(allowedCPUs: 3) == 3)
        #expect(GatewayConfiguration.defaultEventLoops(allowedCPUs: 4) == 2)
        #expect(GatewayConfiguration.defaultEventLoops(allowedCPUs: 16) == 14)
    }
}
