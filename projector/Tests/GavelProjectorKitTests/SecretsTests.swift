import Foundation
import XCTest

@testable import GavelProjectorKit

final class SecretsTests: XCTestCase {
    private var folder = ""

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("projector-secrets-\(UUID())").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: folder)
    }

    private func write(_ text: String, _ name: String = "secret", mode: mode_t = 0o600) throws -> String {
        let path = folder + "/" + name
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, mode)
        return path
    }

    private func refusal(_ body: () throws -> Any?) -> String {
        do {
            _ = try body()
            return "no refusal"
        } catch {
            return "\(error)"
        }
    }

    func testASecretFileIsItsTextLessOneTrailingNewline() throws {
        for (text, secret) in [("tok\n", "tok"), ("tok\r\n", "tok"), ("tok", "tok"), ("tok\n\n", "tok\n")] {
            let path = try write(text)
            XCTAssertEqual(try Secrets.file(path, option: "--token-file", risk: Secrets.tokenRisk), secret)
        }
    }

    func testAMissingFileADirectoryAnEmptyFileAndALooseFileAreRefused() throws {
        let missing = folder + "/none"
        XCTAssertEqual(
            refusal { try Secrets.file(missing, option: "--token-file", risk: Secrets.tokenRisk) },
            "cannot read --token-file \(missing): No such file or directory")
        XCTAssertEqual(
            refusal { try Secrets.file(self.folder, option: "--token-file", risk: Secrets.tokenRisk) },
            "cannot read --token-file \(folder): not a regular file")
        let empty = try write("\n")
        XCTAssertEqual(
            refusal { try Secrets.file(empty, option: "--token-file", risk: Secrets.tokenRisk) },
            "--token-file \(empty) is empty")
        for loose: mode_t in [0o640, 0o604, 0o660, 0o644] {
            let path = try write("s3cr3t-value\n", mode: loose)
            let message = refusal { try Secrets.file(path, option: "--jwt-secret-file", risk: Secrets.keyRisk) }
            XCTAssertTrue(
                message.hasPrefix(
                    "--jwt-secret-file \(path) is open to other users (mode 0\(String(loose, radix: 8)))"),
                message)
            XCTAssertTrue(message.contains("`chmod 600 \(path)`"), message)
            XCTAssertFalse(message.contains("s3cr3t"), message)
        }
    }

    func testAValueAndAFileTogetherAreRefusedAndOptionsWinOverVariables() throws {
        let path = try write("from-file\n")
        let names = (value: "--token", file: "--token-file")
        let variables = (value: "TOKEN", file: "TOKEN_FILE")
        func given(_ value: String?, _ file: String?, _ environment: [String: String]) throws -> String? {
            try Secrets.given(
                value: value, file: file, names: names, environment: environment, variables: variables,
                risk: Secrets.tokenRisk)
        }
        XCTAssertEqual(try given(nil, path, ["TOKEN": "env"]), "from-file")
        XCTAssertEqual(try given("option", nil, ["TOKEN_FILE": path]), "option")
        XCTAssertEqual(try given(nil, nil, ["TOKEN_FILE": path]), "from-file")
        XCTAssertEqual(try given(nil, nil, ["TOKEN": "env"]), "env")
        XCTAssertNil(try given(nil, nil, [:]))
        XCTAssertEqual(refusal { try given("option", path, [:]) }, "give --token or --token-file, not both")
        XCTAssertEqual(
            refusal { try given(nil, nil, ["TOKEN": "env", "TOKEN_FILE": path]) }, "give TOKEN or TOKEN_FILE, not both")
    }

    func testThePasswordFileLineThatMatchesTheURLGivesThePassword() throws {
        let target = try PostgresTarget(url: "postgres://gavel@db.internal:6543/reads")
        let text = """
            # host:port:database:user:password
            db.internal:5432:reads:gavel:wrong-port
            db.internal:6543:other:gavel:wrong-database
            db.internal:6543:reads:gavel:pa\\:ss\\\\word
            *:*:*:*:any
            """
        XCTAssertEqual(Secrets.passwordLine(in: text, for: target), "pa:ss\\word")
        XCTAssertEqual(Secrets.passwordLine(in: "*:6543:*:gavel:star\n", for: target), "star")
        XCTAssertNil(Secrets.passwordLine(in: "db.internal:6543:reads:other:no\nbad line\n", for: target))
    }

    func testPGPASSWORDWinsThenThePasswordFileWhichMustBePrivate() throws {
        let target = try PostgresTarget(url: "postgres://gavel@127.0.0.1:5432/gavel")
        let file = try write("127.0.0.1:5432:gavel:gavel:from-file\n", "pgpass")
        XCTAssertEqual(
            try Secrets.postgresPassword(for: target, environment: ["PGPASSWORD": "env", "PGPASSFILE": file]), "env")
        XCTAssertEqual(try Secrets.postgresPassword(for: target, environment: ["PGPASSFILE": file]), "from-file")
        XCTAssertNil(try Secrets.postgresPassword(for: target, environment: ["PGPASSFILE": folder + "/none"]))
        XCTAssertNil(try Secrets.postgresPassword(for: target, environment: ["HOME": folder]))
        let home = try write("127.0.0.1:5432:gavel:gavel:from-home\n", ".pgpass")
        XCTAssertEqual(try Secrets.postgresPassword(for: target, environment: ["HOME": folder]), "from-home")
        chmod(home, 0o644)
        let message = refusal { try Secrets.postgresPassword(for: target, environment: ["HOME": self.folder]) }
        XCTAssertTrue(message.contains("is open to other users (mode 0644)"), message)
        XCTAssertTrue(message.contains("`chmod 600 \(home)`"), message)
    }

    func testTheURLsPasswordIsFound() {
        func password(_ url: String) -> String? {
            let bytes = Array(url.utf8)
            return Secrets.passwordRange(in: bytes).map { String(decoding: bytes[$0], as: UTF8.self) }
        }
        XCTAssertEqual(password("postgres://gavel:s3cret@db:5432/gavel"), "s3cret")
        XCTAssertEqual(password("postgres://gavel:p@ss:w@db/gavel?sslmode=require"), "p@ss:w")
        XCTAssertNil(password("postgres://gavel@db/gavel"))
        XCTAssertNil(password("postgres://gavel:@db/gavel"))
        XCTAssertNil(password("postgres://db/gavel?user=a:b@c"))
        XCTAssertNil(password("postgres://u@db:5432/gavel"))
        XCTAssertEqual(password("postgres://u:hun/ter?2#pw@db/gavel"), "hun/ter?2#pw")
        XCTAssertTrue(Secrets.hasPassword("postgresql://u:p@h/d"))
        XCTAssertFalse(Secrets.hasPassword("postgresql://u@h/d"))
    }

    func testScrubbingOverwritesOnlyTheSecretsOfTheArguments() {
        let arguments = [
            "gavel-projector", "--token", "tok123", "--gavel-url", "ws://h/ws", "--jwt-secret=key456",
            "--postgres-url", "postgres://u:pw789@h/d", "--postgres-url=postgres://u:pw0@h/d", "--subject", "s", "--",
            "--token", "kept",
        ]
        var storage = arguments.map { strdup($0) }
        storage.append(nil)
        defer { for pointer in storage { free(pointer) } }
        storage.withUnsafeMutableBufferPointer { argv in
            Secrets.scrub(
                argv.baseAddress!, count: arguments.count, options: ["--token", "--jwt-secret"],
                urlOptions: ["--postgres-url"])
        }
        let after = storage.dropLast().map { String(cString: $0!) }
        XCTAssertEqual(
            after,
            [
                "gavel-projector", "--token", "xxxxxx", "--gavel-url", "ws://h/ws", "--jwt-secret=xxxxxx",
                "--postgres-url", "postgres://u:xxxxx@h/d", "--postgres-url=postgres://u:xxx@h/d", "--subject", "s",
                "--", "--token", "kept",
            ])
    }
}
