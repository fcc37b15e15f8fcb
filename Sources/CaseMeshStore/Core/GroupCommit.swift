import Foundation

/// Group commit of access entries: reads that happen at once share one write
/// transaction (one fsync) for their entries instead of queueing for the writer
/// one by one.
///
/// The first caller to find no batch in progress commits everything queued so far
/// while the others wait; each returns once the batch holding its entries has
/// committed. A batch that fails is not retried as a batch: each of its callers is
/// told, and writes its own entries alone, with its own error handling (the full-disk
/// reserve among it). Callers block (store calls are synchronous), so this is used
/// from threads that may block, never from a cooperative pool's.
final class GroupCommit<Item: Sendable>: @unchecked Sendable {
    private final class Waiter {
        let items: [Item]
        var done = false
        var committed = false
        init(_ items: [Item]) { self.items = items }
    }

    private let condition = NSCondition()
    private var queued: [Waiter] = []
    private var committing = false

    /// Commits `items` in a batch with whatever else is queued; true once they are
    /// durable, false when their batch failed.
    func commit(_ items: [Item], with body: ([Item]) throws -> Void) -> Bool {
        let waiter = Waiter(items)
        condition.lock()
        defer { condition.unlock() }
        queued.append(waiter)
        while !waiter.done {
            guard !committing else {
                condition.wait()
                continue
            }
            committing = true
            let batch = queued
            queued.removeAll()
            condition.unlock()
            let committed = (try? body(batch.flatMap(\.items))) != nil
            condition.lock()
            for member in batch {
                member.done = true
                member.committed = committed
            }
            committing = false
            condition.broadcast()
        }
        return waiter.committed
    }
}
