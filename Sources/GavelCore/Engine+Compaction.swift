/// Compaction of the order of remembered results.
///
/// `rememberedOrder` keeps a reference to each remembered result in the order they were applied, and expiry walks it
/// from the oldest. An id the per-principal cap forgets is gone at once (out of the index and its principal's chain,
/// its slot freed) but its reference stays in the order until the walk reaches it; the walk stops at the oldest
/// *live* result. So one principal whose old result is still inside the window (a user who bid once this morning)
/// would hold a stale reference for every later forgotten id of every other principal: memory bounded by window ×
/// rate, not by the ids remembered.
///
/// Compaction bounds the order by the live results: once the stale references outnumber half the live ones by more
/// than ``Engine/compactionSlack``, a pass slides every live reference down over the stale ones, keeping their
/// order, a few references per remembered result (``RememberedOrderCompaction/stepsPerResult``), so the writer
/// never stops for it; when the pass reaches the end of the order, the end is cut off. Nothing points into the order
/// (the index and the principals' chains point at slots), so a move is the copy of one reference; the results
/// themselves never move. The order of the live results — all the state encoding reads — never changes, so the
/// state bytes, the state hash and every later outcome are what they would be without compaction.
struct RememberedOrderCompaction {
    /// References a pass moves or passes over per remembered result: the order shrinks by up to three per result
    /// while one is added.
    static let stepsPerResult = 4

    /// The next reference to read (an absolute position: `rememberedOrderBase` + index).
    var read: Int
    /// Where the next live reference goes. Everything in `write..<read` is stale.
    var write: Int

    /// Expiry passed everything before `head`: a pass never writes there.
    mutating func passed(_ head: Int) {
        if write < head {
            write = head
            read = max(read, head)
        }
    }
}

extension Engine {
    /// The number of references the order of remembered results holds (live and stale, expired ones excluded).
    var rememberedOrderLength: Int { rememberedOrder.count - rememberedOrderHead }

    /// Starts a compaction when stale references outnumber half the live ones beyond the slack, or goes on with the
    /// one under way.
    @inline(__always)
    func compactRememberedOrderIfNeeded() {
        if compaction != nil {
            compactRememberedOrder(steps: RememberedOrderCompaction.stepsPerResult)
        } else if rememberedOrderLength - rememberedLive > rememberedLive / 2 + compactionSlack {
            compactionPasses += 1
            let head = rememberedOrderBase + rememberedOrderHead
            compaction = RememberedOrderCompaction(read: head, write: head)
        }
    }

    /// Moves or passes up to `steps` references of the compaction under way; ends it at the end of the order.
    func compactRememberedOrder(steps: Int) {
        guard var pass = compaction else { return }
        let base = rememberedOrderBase
        let end = base + rememberedOrder.count
        var steps = steps
        while steps > 0, pass.read < end {
            let reference = rememberedOrder[pass.read - base]
            if isLive(reference) {
                if pass.read != pass.write {
                    rememberedOrder[pass.write - base] = reference
                    rememberedOrder[pass.read - base] = .moved
                }
                pass.write += 1
            }
            pass.read += 1
            steps -= 1
        }
        if pass.read == end {
            rememberedOrder.removeLast(end - pass.write)
            compaction = nil
        } else {
            compaction = pass
        }
    }
}
