/// Compaction of the idempotency log.
///
/// The log keeps remembered results in the order they were applied, and expiry walks it from the oldest. An id the
/// per-principal cap forgets is dead at once (out of the index and its principal's chain) but, inside the log, it
/// stays where it is until the walk reaches it; the walk stops at the oldest *live* result. So one principal whose
/// old result is still inside the window (a user who bid once this morning) would hold every later dead entry of
/// every other principal in memory for the whole window: memory bounded by window × rate, not by the ids remembered.
///
/// Compaction bounds the log by the live results: once the dead entries outnumber the live ones by more than
/// ``Engine/compactionSlack``, a pass slides every live entry down over the dead ones, keeping their order, a few
/// entries per remembered result (``RememberedLogCompaction/stepsPerResult``), so the writer never stops for it; when
/// the pass reaches the end of the log, the end is cut off. A moved entry's position is updated in the index
/// (``RequestTable/relocate(hash:from:to:)``) and in its principal's chain (its predecessor's `next`, or the chain's
/// `oldest`/`newest`). The order of the live results — all the state encoding reads — never changes, so the state
/// bytes, the state hash and every later outcome are what they would be without compaction.
struct RememberedLogCompaction {
    /// Entries a pass moves or passes over per remembered result: the log shrinks by up to three per result while
    /// one is added.
    static let stepsPerResult = 4

    /// The next entry to read (an absolute position: `rememberedBase` + index).
    var read: Int
    /// Where the next live entry goes. Everything in `write..<read` is dead.
    var write: Int
    /// This pass's number, to tell a chain's last moved entry from one of an earlier pass.
    let pass: Int

    /// Expiry passed everything before `head`: a pass never writes there.
    mutating func passed(_ head: Int) {
        if write < head {
            write = head
            read = max(read, head)
        }
    }
}

extension Engine {
    /// The number of entries the idempotency log holds (live and dead, expired ones excluded).
    var rememberedLogLength: Int { rememberedLog.count - rememberedHead }

    /// Starts a compaction when dead entries outnumber live ones beyond the slack, or goes on with the one under way.
    @inline(__always)
    func compactRememberedLogIfNeeded() {
        if compaction != nil {
            compactRememberedLog(steps: RememberedLogCompaction.stepsPerResult)
        } else if rememberedLogLength - requests.count > requests.count + compactionSlack {
            compactionPasses += 1
            let head = rememberedBase + rememberedHead
            compaction = RememberedLogCompaction(read: head, write: head, pass: compactionPasses)
        }
    }

    /// Moves or passes up to `steps` entries of the compaction under way; ends it at the end of the log.
    func compactRememberedLog(steps: Int) {
        guard var pass = compaction else { return }
        let end = rememberedBase + rememberedLog.count
        var steps = steps
        while steps > 0, pass.read < end {
            let from = pass.read - rememberedBase
            if rememberedLog[from].live {
                let slot = rememberedLog[from].principalSlot
                if pass.read != pass.write {
                    move(from: pass.read, to: pass.write, slot: slot, pass: pass.pass)
                }
                principals.markMoved(slot: slot, position: pass.write, pass: pass.pass)
                pass.write += 1
            }
            pass.read += 1
            steps -= 1
        }
        if pass.read == end {
            rememberedLog.removeLast(end - pass.write)
            compaction = nil
        } else {
            compaction = pass
        }
    }

    /// Moves the live entry at `from` to the dead place `to` (earlier in the log), keeping the index and the chain of
    /// its principal (in `slot`) pointing at it.
    private func move(from: Int, to: Int, slot: Int, pass: Int) {
        var entry = rememberedLog[from - rememberedBase]
        rememberedLog[from - rememberedBase].live = false
        requests.relocate(hash: entry.hash, from: from, to: to)
        var chain = principals[slot]
        if chain.oldest == from {
            chain.oldest = to
        } else if let previous = principals.lastMoved(slot: slot, pass: pass) {
            // Not its chain's oldest, so its predecessor is live, earlier in the log, and this pass went over it.
            rememberedLog[previous - rememberedBase].next = to
        }
        if chain.newest == from { chain.newest = to }
        principals[slot] = chain
        entry.live = true
        rememberedLog[to - rememberedBase] = entry
    }
}
