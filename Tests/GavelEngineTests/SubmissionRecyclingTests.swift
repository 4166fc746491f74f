import GavelCore
@_spi(Manual) import GavelEngine
import Testing

/// A thread's spent submissions are filled again by its next submits, and only when nothing else holds them.
@Suite struct SubmissionRecyclingTests {
    /// The submissions of the kept batches, taken out before each batch is given back (as the fan-out's items hold
    /// them while the router resets the batch).
    private func spentSubmissions(of batches: [Batch]) -> [Submission] {
        var spent: [Submission] = []
        for batch in batches {
            for entry in batch.entries {
                if let submission = entry.submission { spent.append(submission) }
            }
            for unapplied in batch.unapplied { spent.append(unapplied.submission) }
            batch.recycle()
        }
        return spent
    }

    @Test func aSubmissionNothingElseHoldsIsFilledAgainByTheThreadsNextSubmit() throws {
        let (observer, writer) = manualWriterKeepingBatches()
        _ = writer.submit(openEnglish("L"), replyTo: observer)
        _ = writer.submit(bid("L", "ann", 100, id: "b1"), replyTo: observer)
        writer.runUntilIdle()
        var spent = spentSubmissions(of: observer.take())
        try #require(spent.count == 2)
        let reusable = Set(spent.map(ObjectIdentifier.init))
        Submission.recycle(&spent)
        #expect(spent.isEmpty)

        _ = writer.submit(bid("L", "bob", 300, id: "b2"), replyTo: observer)
        _ = writer.submit(bid("L", "cy", 500, id: "b3"), replyTo: observer)
        writer.runUntilIdle()
        let batches = observer.take()
        let entries = batches.flatMap(\.entries)
        try #require(entries.count == 2)
        for entry in entries {
            let submission = try #require(entry.submission)
            #expect(reusable.contains(ObjectIdentifier(submission)), "a spent submission was filled again")
            #expect(submission.recipient === observer, "with the new command's recipient")
        }
        // Filled with the new commands, applied as themselves: bob leads, then cy.
        #expect(entries.map { $0.submission?.command.id } == ["b2", "b3"])
        #expect(entries.map { $0.result?.error } == [nil, nil])
        #expect(entries.map { $0.result?.leading } == [true, true])
        for batch in batches { batch.recycle() }
        writer.finishManual()
    }

    @Test func aSubmissionStillReferencedElsewhereIsNeverFilledAgain() throws {
        let (observer, writer) = manualWriterKeepingBatches()
        _ = writer.submit(openEnglish("L"), replyTo: observer)
        writer.runUntilIdle()
        let batches = observer.take()
        // The batch is not given back: it still holds the submission when the thread recycles it.
        let held = try #require(batches.first?.entries.first?.submission)
        var spent = [held]
        Submission.recycle(&spent)

        _ = writer.submit(bid("L", "ann", 100, id: "b1"), replyTo: observer)
        writer.runUntilIdle()
        let next = try #require(observer.take().first?.entries.first?.submission)
        #expect(next !== held, "a submission someone still holds is not reused")
        #expect(held.command.id == "open-L", "and keeps its own command")
        #expect(held.recipient === observer)
        for batch in batches { batch.recycle() }
        writer.finishManual()
    }

    @Test func aSpareDoesNotKeepItsLastRecipientAlive() throws {
        let (observer, writer) = manualWriterKeepingBatches()
        final class Recipient: ResultRecipient, Sendable {}
        var recipient: Recipient? = Recipient()
        weak let gone = recipient
        _ = writer.submit(openEnglish("L"), replyTo: recipient)
        recipient = nil
        writer.runUntilIdle()
        var spent = spentSubmissions(of: observer.take())
        try #require(spent.count == 1)
        #expect(gone != nil, "the submission holds its recipient until it is recycled")
        Submission.recycle(&spent)
        #expect(gone == nil, "a spare does not keep the recipient of its last command alive")
        writer.finishManual()
    }
}
