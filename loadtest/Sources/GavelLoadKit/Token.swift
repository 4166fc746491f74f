import Crypto
import Foundation

/// HS256 JSON Web Tokens as `gavel serve` accepts them (`sub`, `role`, `exp`).
public enum Token {
    public static func mint(secret: String, subject: String, role: String, expires: Date) -> String {
        let header = base64URL(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let claims = #"{"sub":"\#(subject)","role":"\#(role)","exp":\#(Int(expires.timeIntervalSince1970))}"#
        let payload = base64URL(Data(claims.utf8))
        let input = header + "." + payload
        let mac = HMAC<SHA256>.authenticationCode(
            for: Data(input.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return input + "." + base64URL(Data(mac))
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
