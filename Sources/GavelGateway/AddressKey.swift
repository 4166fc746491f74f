import NIOCore

/// What the per-address limits (`maxConnectionsPerAddress`, `maxHandshakesPerAddress`) count a connection under.
///
/// An IPv4 client is its address. An IPv6 client is the network of its first `ipv6PrefixBits` bits: an ISP or a
/// cloud provider hands a customer a whole /64 (or more), and every address in it is the same client's, so counting
/// per /128 would let one client open the per-address limit again from each of 2^64 addresses. An IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 client) is its IPv4 address.
enum AddressKey {
    /// The key of `address`: `"203.0.113.7"`, `"2001:db8:1:2::/64"`, or an IPv6 address alone at 128 bits; `nil`
    /// for a connection without an IP address (a Unix socket).
    static func of(_ address: SocketAddress?, ipv6PrefixBits: Int) -> String? {
        guard let address else { return nil }
        guard case .v6(let v6) = address else { return address.ipAddress }
        var storage = v6.address
        var bytes = withUnsafeBytes(of: storage.sin6_addr) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return "\(bytes[12]).\(bytes[13]).\(bytes[14]).\(bytes[15])"
        }
        let bits = min(max(ipv6PrefixBits, 0), 128)
        guard bits < 128 else { return address.ipAddress }
        for index in 0..<16 {
            let kept = min(max(bits - index * 8, 0), 8)
            bytes[index] &= kept == 8 ? 0xff : ~(UInt8(0xff) >> kept)
        }
        withUnsafeMutableBytes(of: &storage.sin6_addr) { $0.copyBytes(from: bytes) }
        storage.sin6_scope_id = 0
        let network = SocketAddress(storage, host: "")
        return "\(network.ipAddress ?? "?")/\(bits)"
    }
}
