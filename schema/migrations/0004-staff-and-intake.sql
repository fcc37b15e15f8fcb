-- Staff accounts, their login sessions, intake channels' API keys and the reports
-- they delivered. Node-local: none of this replicates (a person logs in to their
-- own institution's node; a channel delivers to one node).

-- One account per person. The password is kept only as PBKDF2-HMAC-SHA256 with a
-- random salt and its round count (so the count can be raised for new hashes).
CREATE TABLE staffAccount (
    username TEXT PRIMARY KEY NOT NULL,
    displayName TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('caseworker', 'supervisor', 'admin')),
    passwordHash BLOB NOT NULL,
    passwordSalt BLOB NOT NULL,
    passwordRounds INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    -- Failed logins in a row, and until when (ms) the account is locked.
    failedLogins INTEGER NOT NULL DEFAULT 0,
    lockedUntil INTEGER NOT NULL DEFAULT 0,
    createdAt INTEGER NOT NULL
);

-- A login. Only the SHA-256 of the token is stored: a copy of the database does not
-- let anyone act as a logged-in person.
CREATE TABLE staffSession (
    tokenHash BLOB PRIMARY KEY NOT NULL,
    username TEXT NOT NULL REFERENCES staffAccount (username),
    createdAt INTEGER NOT NULL,
    lastSeenAt INTEGER NOT NULL,
    revokedAt INTEGER
);
CREATE INDEX staffSessionByUser ON staffSession (username);

-- An intake channel's API key, as its SHA-256 (the key is printed once).
CREATE TABLE intakeKey (
    channel TEXT PRIMARY KEY NOT NULL,
    keyHash BLOB NOT NULL,
    createdAt INTEGER NOT NULL
);

-- Reports delivered by a channel, by the channel's own message ID: the same report
-- delivered twice opens one case.
CREATE TABLE intakeReport (
    channel TEXT NOT NULL,
    messageID TEXT NOT NULL,
    caseKey TEXT NOT NULL,
    receivedAt INTEGER NOT NULL,
    PRIMARY KEY (channel, messageID)
);
