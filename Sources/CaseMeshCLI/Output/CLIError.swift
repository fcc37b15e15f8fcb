import ArgumentParser
import CaseMeshCRDT
import CaseMeshModel
import CaseMeshStore

/// A failure reported to the user as one line on standard error, with a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    var message: String

    var description: String { Terminal.safe(message) }

    /// Runs `body`, turning the errors of the lower layers into one-line messages.
    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as StoreError {
            throw CLIError(message: error.message)
        } catch let error as CRDTError {
            throw CLIError(message: error.message)
        } catch let error as ModelError {
            throw CLIError(message: error.message)
        }
    }

    /// As ``wrap(_:)``, for work that waits (a certificate check).
    static func wrap<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as StoreError {
            throw CLIError(message: error.message)
        } catch let error as CRDTError {
            throw CLIError(message: error.message)
        } catch let error as ModelError {
            throw CLIError(message: error.message)
        }
    }
}
