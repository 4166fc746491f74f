import CGavelShims
import GavelCore

/// Handles on the listings a replay applies commands to, kept by the hash of their id
/// (``ListingHandle/hash(of:)``, which recovery's reading thread computes with each command's digest), so that the
/// applying thread neither looks each command's listing up by its `String` id nor waits for the listing's memory:
/// a few commands ahead it starts loading the table's slot, then the listing's object and its book
/// (``prefetchSlot(_:)``, ``prefetchListing(_:)``). The lookup by id and the first touch of a listing that the
/// previous command did not use were the largest part of a replayed bid's rules (a `Dictionary` probe and a
/// retain that each waited for memory).
///
/// A handle is handed out only while it is current and for the id asked for (``ListingHandle/isCurrent(for:)``);
/// otherwise the engine is asked again and the slot takes the new handle. The engine checks a handle once more
/// before it uses one, so the table decides only how fast a command finds its listing, never which it finds.
///
/// Open addressing with linear probing, at most half full. Handles keep their listings alive, so before it grows
/// the table lets go of the handles no longer current (listings evicted since): it holds at most as many listings
/// as were in memory at once, twice over. One owner, the applying thread.
struct ReplayListings {
    private struct Slot {
        var hash: UInt64
        var handle: ListingHandle?
    }

    private var slots: [Slot]
    private var mask: Int
    private var count = 0

    /// A table with room for `capacity` slots (rounded up to a power of two).
    init(capacity: Int = 1 << 12) {
        var size = 16
        while size < capacity { size <<= 1 }
        slots = Array(repeating: Slot(hash: 0, handle: nil), count: size)
        mask = size - 1
    }

    /// The number of listings the table holds a handle on.
    var held: Int { count }

    /// The number of slots.
    var capacity: Int { slots.count }

    /// Starts loading the slot where the listing whose id hashes to `hash` would be; changes nothing.
    @inline(__always)
    func prefetchSlot(_ hash: UInt64) {
        slots.withUnsafeBufferPointer {
            gavel_prefetch_for_write($0.baseAddress! + Int(truncatingIfNeeded: hash) & mask)
        }
    }

    /// Starts loading the listing whose id hashes to `hash` and its book, when the table holds it in its first
    /// slot (where it nearly always is); changes nothing.
    @inline(__always)
    func prefetchListing(_ hash: UInt64) {
        slots.withUnsafeBufferPointer { slots in
            let slot = slots.baseAddress! + Int(truncatingIfNeeded: hash) & mask
            if slot.pointee.hash == hash, let handle = slot.pointee.handle { handle.prefetch() }
        }
    }

    /// The current handle on the listing `id`, whose ``ListingHandle/hash(of:)`` is `hash`, taking it from
    /// `engine` when the table has none (or one no longer current); `nil` when `engine` holds no such listing.
    @inline(__always)
    mutating func handle(for id: String, hash: UInt64, in engine: Engine) -> ListingHandle? {
        var index = Int(truncatingIfNeeded: hash) & mask
        while let held = slots[index].handle {
            if slots[index].hash == hash {
                if held.isCurrent(for: id) { return held }
                // A listing evicted since (or, far less likely, another id with the same hash): the slot takes the
                // engine's handle on `id`.
                let fresh = engine.handle(for: id)
                if let fresh { slots[index].handle = fresh }
                return fresh
            }
            index = (index + 1) & mask
        }
        guard let fresh = engine.handle(for: id) else { return nil }
        slots[index] = Slot(hash: hash, handle: fresh)
        count += 1
        if 2 * count > slots.count { rebuild() }
        return fresh
    }

    /// Places the handles still current in a table of the size they need: the same size when handles on evicted
    /// listings made it full, twice the size when the listings in memory did.
    private mutating func rebuild() {
        let current = slots.filter { $0.handle?.isCurrent ?? false }
        let size = 4 * current.count > slots.count ? 2 * slots.count : slots.count
        slots = Array(repeating: Slot(hash: 0, handle: nil), count: size)
        mask = size - 1
        count = current.count
        for slot in current {
            var index = Int(truncatingIfNeeded: slot.hash) & mask
            while slots[index].handle != nil { index = (index + 1) & mask }
            slots[index] = slot
        }
    }
}
