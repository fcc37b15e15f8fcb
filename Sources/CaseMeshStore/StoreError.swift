import GRDB

/// An error raised by the case store.
///
/// Refusals caused by input (a bad change, an unknown case, a store of another
/// schema) carry a one-line ``message`` fit for the command line; database failures
/// keep their ``cause``.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The data directory holds no replica yet.
        public static let notInitialized = Code("notInitialized")
        /// The data directory already holds a replica.
        public static let alreadyInitialized = Code("alreadyInitialized")
        /// No case with that ID is held here.
        public static let caseNotFound = Code("caseNotFound")
        /// This institution's right to the case has ended; it is kept only until its
        /// own edits have gone out, and shown to nobody.
        public static let withdrawn = Code("withdrawn")
        /// A write was refused (schema, identifiers, clock).
        public static let invalidWrite = Code("invalidWrite")
        /// The store or a bundle follows another schema version.
        public static let schemaMismatch = Code("schemaMismatch")
        /// A bundle or stored record is malformed.
        public static let corrupt = Code("corrupt")
        /// A login or session was refused (wrong password, unknown account, expired or
        /// revoked session, disabled account).
        public static let unauthenticated = Code("unauthenticated")
        /// The account is locked for a while after failed logins.
        public static let locked = Code("locked")
        /// The replica was restored from a backup and makes no change of its own until
        /// it has synced again with the peers it knew (it could number one twice).
        public static let restoreHold = Code("restoreHold")
        /// SQLite or the file system failed.
        public static let database = Code("database")
    }

    public var code: Code
    public var message: String
    public var cause: (any Error & Sendable)?

    public init(code: Code, message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }
}

extension StoreError {
    /// Whether SQLite refused a write because the disk (or the database's page limit)
    /// is full.
    public var isDiskFull: Bool {
        guard code == .database, let error = cause as? DatabaseError else { return false }
        return error.resultCode == .SQLITE_FULL
    }

    /// Whether SQLite failed on the file system (an I/O error: on a full disk, a WAL
    /// database cannot even be opened).
    var isStorageFailure: Bool {
        guard code == .database, let error = cause as? DatabaseError else { return false }
        return error.resultCode == .SQLITE_IOERR || error.resultCode == .SQLITE_FULL
    }
}
