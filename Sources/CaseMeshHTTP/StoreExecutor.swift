import Dispatch
import Hummingbird

/// Runs API handlers off Swift's cooperative thread pool.
///
/// Handlers call the store synchronously (GRDB blocks the calling thread on SQLite
/// and on the single writer). The cooperative pool has one thread per core — two
/// here — so two handlers waiting for the writer would stall every other task in
/// the process, sync sessions included. Handlers prefer this executor instead: a
/// concurrent Dispatch queue, which adds threads while its jobs block. No listed
/// package provides a `TaskExecutor` for blocking work, hence these few lines.
final class StoreExecutor: TaskExecutor, @unchecked Sendable {
    private let queue = DispatchQueue(label: "casemesh.api.store", qos: .userInitiated, attributes: .concurrent)

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
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
