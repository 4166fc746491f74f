import CLoadSystem
import Foundation

/// The CPUs of `--cpu`: numbers and ranges separated by commas, e.g. `1`, `0-1` or `0,2-3`.
public struct CPUList: Sendable, Equatable, CustomStringConvertible {
    /// The CPU numbers, ascending, each once.
    public let cpus: [Int]

    /// The most CPUs a `cpu_set_t` holds (CPU_SETSIZE).
    static let setSize = 1_024

    /// Parses `text`; the message of a refusal names `--cpu` and what it accepts.
    public init(parsing text: String) throws(LoadError) {
        let usage = "--cpu takes CPU numbers and ranges separated by commas (e.g. 1, 0-1 or 0,2-3), got \(text)"
        var chosen = Set<Int>()
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1])
            else { throw .invalid(usage) }
            guard low >= 0, low <= high else { throw .invalid(usage) }
            guard high < Self.setSize else { throw .invalid("--cpu: CPU \(high) is beyond \(Self.setSize - 1)") }
            chosen.formUnion(low...high)
        }
        cpus = chosen.sorted()
    }

    public var description: String { cpus.map(String.init).joined(separator: ",") }

    /// Pins every thread of this process (and so the threads they start later) to these CPUs with
    /// `sched_setaffinity`; call it before the driver starts its own threads. The message of a failure names the
    /// CPUs this process may use.
    public func pinProcess() throws(LoadError) {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        let threads = tasks.compactMap { pid_t($0) }
        let numbers = cpus.map(Int32.init)
        for thread in threads.isEmpty ? [0] : threads
        where cload_set_affinity(thread, numbers, Int32(numbers.count)) != 0 {
            let reason = String(cString: strerror(errno))
            throw .invalid(
                "--cpu \(self): sched_setaffinity failed (\(reason)); this process may use CPUs \(Self.allowed())")
        }
    }

    /// The CPUs this process may run on, e.g. `0,1`.
    static func allowed() -> String { allowedCPUs().map(String.init).joined(separator: ",") }

    /// The CPUs this process may run on (empty if the kernel does not say).
    static func allowedCPUs() -> [Int] {
        var cpus = [Int32](repeating: 0, count: setSize)
        let count = cload_get_affinity(&cpus, Int32(setSize))
        return count < 0 ? [] : cpus[..<Int(count)].map(Int.init)
    }

    /// Refuses CPUs this process may not run on, naming those it may.
    public func checkAllowed() throws(LoadError) {
        let allowed = Self.allowedCPUs()
        guard !allowed.isEmpty else { return }
        let missing = cpus.filter { !allowed.contains($0) }
        if !missing.isEmpty {
            throw .invalid(
                "--cpu \(self): CPU \(missing.map(String.init).joined(separator: ",")) is not available; this process may use CPUs \(Self.allowed())"
            )
        }
    }
}
