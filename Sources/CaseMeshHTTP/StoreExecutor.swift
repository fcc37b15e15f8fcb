import Foundation
import Hummingbird

/// Runs API handlers on threads of their own, off Swift's cooperative pool.
///
/// Handlers call the store synchronously (GRDB blocks the calling thread on SQLite,
/// on the single writer and on the group commit of access entries). The cooperative
/// pool has one thread per core — two here — so two handlers waiting for the writer
/// would stall every other task in the process, sync sessions included. A Dispatch
/// queue is no better on Linux: its worker pool is also sized to the cores and grows
/// only slowly when its jobs block, so under load two handlers ran at a time and the
/// rest queued behind their disk waits (measured: 2 worker threads, p50 over 200 ms
/// at 32 clients). This executor keeps a fixed set of threads, as many as the
/// store has readers plus the writer, so reads proceed while others wait to write,
/// and waiting writes share one group commit.
///
/// No listed package provides a `TaskExecutor` over a fixed thread pool (NIO's
/// `NIOThreadPool` is not one), hence these lines. One pool serves every listener
/// of the process; its threads live as long as the process.
final class StoreExecutor: TaskExecutor, @unchecked Sendable {
    /// The process's pool.
    static let shared = StoreExecutor(threads: 17)

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var head = 0

    init(threads: Int) {
        for index in 0..<max(1, threads) {
            let thread = Thread { [unowned self] in self.work() }
            thread.name = "casemesh-api-\(index)"
            thread.start()
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        let executor = asUnownedTaskExecutor()
        while true {
            condition.lock()
            while head == jobs.count { condition.wait() }
            let job = jobs[head]
            head += 1
            // Compact the queue once its taken part dominates (amortised O(1)).
            if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job.runSynchronously(on: executor)
        }
    }
}

/// Runs the rest of each request's handling on the ``StoreExecutor``.
struct StoreExecutorMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let executor: StoreExecutor

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        try await withTaskExecutorPreference(executor) { try await next(request, context) }
    }
}
