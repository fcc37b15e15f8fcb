import Crypto
import Foundation
import GRDB
import _CryptoExtras

/// What a staff account may do on its institution's node.
public enum StaffRole: String, Sendable, Codable, CaseIterable, Comparable {
    /// Reads and writes the cases of the institution.
    case caseworker
    /// Also resolves conflicts, shares and withdraws cases.
    case supervisor
    /// Also manages staff accounts and sees sync status.
    case admin

    private var rank: Int {
        switch self {
        case .caseworker: 0
        case .supervisor: 1
        case .admin: 2
        }
    }

    public static func < (lhs: StaffRole, rhs: StaffRole) -> Bool { lhs.rank < rhs.rank }
}

/// A person who logs in to this node.
public struct StaffAccount: Sendable, Hashable {
    public var username: String
    /// The name shown on screens and in the access log (for example 김민지).
    public var displayName: String
    public var role: StaffRole
    public var disabled: Bool
    /// Until when (ms since 1970) the account is locked after failed logins; 0 when not.
    public var lockedUntilMillis: UInt64
}

/// A logged-in session, as a request presents it.
public struct StaffSession: Sendable, Hashable {
    public var account: StaffAccount
    public var createdAtMillis: UInt64
    public var lastSeenAtMillis: UInt64
}

/// How staff passwords are kept: PBKDF2-HMAC-SHA256 with a 16-byte random salt and
/// 600,000 rounds, OWASP's figure for this function (Password Storage Cheat Sheet,
/// 2023); about 0.3 s per login on this kind of machine, which is what makes a stolen
/// database slow to attack and costs a person nothing. The round count is stored
/// with each hash, so it can be raised for new passwords without breaking old ones.
/// PBKDF2 rather than scrypt: swift-crypto's BoringSSL has both, and PBKDF2 needs no
/// memory budget on a small node that also serves sync.
public enum PasswordHashing {
    public static let rounds = 600_000

    static func hash(_ password: String, salt: [UInt8], rounds: Int) throws(StoreError) -> [UInt8] {
        do {
            let key = try KDF.Insecure.PBKDF2.deriveKey(
                from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32,
                unsafeUncheckedRounds: rounds)
            return key.withUnsafeBytes { Array($0) }
        } catch {
            throw StoreError(code: .database, message: "cannot hash the password: \(error)")
        }
    }
}

extension CaseStore {
    /// Failed logins in a row that lock an account.
    public static let maximumFailedLogins = 5
    /// How long an account stays locked after them.
    public static let lockoutMillis: UInt64 = 15 * 60_000

    /// Refuses a username that is not 2–32 lowercase letters, digits, `.`, `_` or `-`.
    static func validateUsername(_ username: String) throws(StoreError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789._-")
        guard (2...32).contains(username.count), username.allSatisfy(allowed.contains) else {
            throw StoreError(
                code: .invalidWrite,
                message:
                    "a username is 2 to 32 lowercase letters, digits, '.', '_' or '-' (got '\(username.prefix(40))')"
            )
        }
    }

    /// Refuses a password shorter than 10 characters or longer than 256.
    static func validatePassword(_ password: String) throws(StoreError) {
        guard (10...256).contains(password.count) else {
            throw StoreError(code: .invalidWrite, message: "a password is 10 to 256 characters")
        }
    }

    /// Creates a staff account.
    ///
    /// - Throws: ``StoreError`` `invalidWrite` for a bad username, name or password, or
    ///   when the username is taken.
    public func addStaff(username: String, displayName: String, role: StaffRole, password: String) throws(StoreError) {
        try Self.validateUsername(username)
        try Self.validatePassword(password)
        let name = displayName.isEmpty ? username : displayName
        guard name.count <= 100, !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else { throw StoreError(code: .invalidWrite, message: "a display name is at most 100 printable characters") }
        let salt = Self.randomBytes(16)
        let hash = try PasswordHashing.hash(password, salt: salt, rounds: PasswordHashing.rounds)
        let now = Int64(clamping: clock.nowMillis())
        try write { db in
            guard
                try !Bool.fetchOne(
                    db, sql: "SELECT EXISTS (SELECT 1 FROM staffAccount WHERE username = ?)",
                    arguments: [username])!
            else { throw StoreError(code: .invalidWrite, message: "there is already an account '\(username)'") }
            try db.execute(
                sql: """
                    INSERT INTO staffAccount (username, displayName, role, passwordHash, passwordSalt, passwordRounds, createdAt)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [username, name, role.rawValue, Data(hash), Data(salt), PasswordHashing.rounds, now])
        }
    }

    /// Every staff account, by username.
    public func staffAccounts() throws(StoreError) -> [StaffAccount] {
        try read { db in
            try Row.fetchAll(
                db, sql: "SELECT username, displayName, role, disabled, lockedUntil FROM staffAccount ORDER BY username"
            ).map(Self.account)
        }
    }

    /// One staff account.
    public func staffAccount(_ username: String) throws(StoreError) -> StaffAccount? {
        try read { db in
            try Row.fetchOne(
                db,
                sql: "SELECT username, displayName, role, disabled, lockedUntil FROM staffAccount WHERE username = ?",
                arguments: [username]
            ).map(Self.account)
        }
    }

    private static func account(_ row: Row) -> StaffAccount {
        StaffAccount(
            username: row["username"], displayName: row["displayName"],
            role: StaffRole(rawValue: row["role"]) ?? .caseworker, disabled: row["disabled"] as Bool,
            lockedUntilMillis: UInt64(clamping: row["lockedUntil"] as Int64))
    }

    /// Disables an account and ends its sessions at once.
    public func disableStaff(_ username: String) throws(StoreError) {
        let now = Int64(clamping: clock.nowMillis())
        try write { db in
            try db.execute(sql: "UPDATE staffAccount SET disabled = 1 WHERE username = ?", arguments: [username])
            guard db.changesCount == 1 else {
                throw StoreError(code: .invalidWrite, message: "no account '\(username)'")
            }
            try db.execute(
                sql: "UPDATE staffSession SET revokedAt = ? WHERE username = ? AND revokedAt IS NULL",
                arguments: [now, username])
        }
    }

    /// Sets a new password: ends the account's sessions and lifts a lock.
    public func setStaffPassword(_ username: String, password: String) throws(StoreError) {
        try Self.validatePassword(password)
        let salt = Self.randomBytes(16)
        let hash = try PasswordHashing.hash(password, salt: salt, rounds: PasswordHashing.rounds)
        let now = Int64(clamping: clock.nowMillis())
        try write { db in
            try db.execute(
                sql: """
                    UPDATE staffAccount SET passwordHash = ?, passwordSalt = ?, passwordRounds = ?, failedLogins = 0,
                    lockedUntil = 0 WHERE username = ?
                    """,
                arguments: [Data(hash), Data(salt), PasswordHashing.rounds, username])
            guard db.changesCount == 1 else {
                throw StoreError(code: .invalidWrite, message: "no account '\(username)'")
            }
            try db.execute(
                sql: "UPDATE staffSession SET revokedAt = ? WHERE username = ? AND revokedAt IS NULL",
                arguments: [now, username])
        }
    }

    /// Checks a login and opens a session.
    ///
    /// - Returns: the session token (32 random bytes, base64url), which only the
    ///   client keeps; the store keeps its SHA-256.
    /// - Throws: ``StoreError`` `unauthenticated` ("wrong username or password", the
    ///   same for an unknown account, whose check takes as long), or `locked`.
    public func login(username: String, password: String) throws(StoreError) -> (token: String, account: StaffAccount) {
        let now = clock.nowMillis()
        let found = try read { db -> (StaffAccount, salt: [UInt8], hash: [UInt8], rounds: Int)? in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT username, displayName, role, disabled, lockedUntil, passwordHash, passwordSalt, passwordRounds
                        FROM staffAccount WHERE username = ?
                        """, arguments: [username])
            else { return nil }
            return (
                Self.account(row), [UInt8](row["passwordSalt"] as Data), [UInt8](row["passwordHash"] as Data),
                row["passwordRounds"] as Int
            )
        }
        let wrong = StoreError(code: .unauthenticated, message: "wrong username or password")
        guard let found, password.count <= 256 else {
            _ = try PasswordHashing.hash(password.prefix(256).description, salt: [0], rounds: PasswordHashing.rounds)
            throw wrong
        }
        let account = found.0
        if account.lockedUntilMillis > now {
            throw StoreError(
                code: .locked,
                message: "the account is locked after \(Self.maximumFailedLogins) failed logins; try again in "
                    + "\((account.lockedUntilMillis - now) / 60_000 + 1) minutes or ask an administrator")
        }
        let rounds = min(max(found.rounds, 1), 10_000_000)
        let hash = try PasswordHashing.hash(password, salt: found.salt, rounds: rounds)
        let stored = found.hash
        // Compared in constant time.
        let matches = hash.count == stored.count && zip(hash, stored).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
        guard matches, !account.disabled else {
            let limit = Self.maximumFailedLogins
            let lockUntil = Int64(clamping: now + Self.lockoutMillis)
            try write { db in
                try db.execute(
                    sql: """
                        UPDATE staffAccount SET lockedUntil = CASE WHEN failedLogins + 1 >= ? THEN ? ELSE lockedUntil END,
                        failedLogins = CASE WHEN failedLogins + 1 >= ? THEN 0 ELSE failedLogins + 1 END
                        WHERE username = ?
                        """, arguments: [limit, lockUntil, limit, username])
            }
            throw wrong
        }
        let token = Data(Self.randomBytes(32)).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        let stamp = Int64(clamping: now)
        try write { db in
            try db.execute(sql: "UPDATE staffAccount SET failedLogins = 0 WHERE username = ?", arguments: [username])
            try db.execute(
                sql: "INSERT INTO staffSession (tokenHash, username, createdAt, lastSeenAt) VALUES (?, ?, ?, ?)",
                arguments: [Self.tokenHash(token), username, stamp, stamp])
        }
        return (token, account)
    }

    /// Bytes from the system's cryptographic generator: salts, session tokens and API
    /// keys must be unpredictable, so they are the one randomness not drawn from an
    /// injected seed.
    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    static func tokenHash(_ token: String) -> Data { Data(SHA256.hash(data: Array(token.utf8))) }

    /// The session a token names, if it is open: not revoked, its account enabled,
    /// and used within `idleMillis`. Using it keeps it open (its last use is written
    /// at most once a minute, so reads do not each cost a disk write).
    public func staffSession(token: String, idleMillis: UInt64) throws(StoreError) -> StaffSession? {
        guard !token.isEmpty, token.utf8.count <= 128 else { return nil }
        let now = clock.nowMillis()
        let hash = Self.tokenHash(token)
        let found = try read { db -> (StaffAccount, createdAt: Int64, lastSeenAt: Int64)? in
            guard
                let row = try Row.fetchOne(
                    db.cachedStatement(
                        sql: """
                            SELECT a.username, a.displayName, a.role, a.disabled, a.lockedUntil, s.createdAt,
                            s.lastSeenAt FROM staffSession s JOIN staffAccount a ON a.username = s.username
                            WHERE s.tokenHash = ? AND s.revokedAt IS NULL
                            """), arguments: [hash])
            else { return nil }
            return (Self.account(row), row["createdAt"], row["lastSeenAt"])
        }
        guard let found else { return nil }
        let account = found.0
        let lastSeen = UInt64(clamping: found.lastSeenAt)
        guard !account.disabled, now <= lastSeen + idleMillis else { return nil }
        if now > lastSeen + 60_000 {
            try write { db in
                try db.execute(
                    sql: "UPDATE staffSession SET lastSeenAt = ? WHERE tokenHash = ?",
                    arguments: [Int64(clamping: now), hash])
            }
        }
        return StaffSession(
            account: account, createdAtMillis: UInt64(clamping: found.createdAt), lastSeenAtMillis: lastSeen)
    }

    /// Ends a session (log out).
    public func endStaffSession(token: String) throws(StoreError) {
        let now = Int64(clamping: clock.nowMillis())
        try write { db in
            try db.execute(
                sql: "UPDATE staffSession SET revokedAt = ? WHERE tokenHash = ? AND revokedAt IS NULL",
                arguments: [now, Self.tokenHash(token)])
        }
    }

    // MARK: Intake channels

    /// Creates (or replaces) the API key of an intake channel.
    ///
    /// - Returns: the key, to be given to the channel once; the store keeps its SHA-256.
    public func addIntakeKey(channel: String) throws(StoreError) -> String {
        try Self.validateUsername(channel)
        let bytes = Self.randomBytes(32)
        let key =
            "cmk_"
            + bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined()
        let now = Int64(clamping: clock.nowMillis())
        try write { db in
            try db.execute(
                sql: "INSERT OR REPLACE INTO intakeKey (channel, keyHash, createdAt) VALUES (?, ?, ?)",
                arguments: [channel, Self.tokenHash(key), now])
        }
        return key
    }

    /// The channel an intake API key belongs to, if any.
    public func intakeChannel(key: String) throws(StoreError) -> String? {
        guard !key.isEmpty, key.utf8.count <= 128 else { return nil }
        return try read { db in
            try String.fetchOne(
                db, sql: "SELECT channel FROM intakeKey WHERE keyHash = ?", arguments: [Self.tokenHash(key)])
        }
    }

    /// The intake channels that have a key.
    public func intakeChannels() throws(StoreError) -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT channel FROM intakeKey ORDER BY channel") }
    }
}
