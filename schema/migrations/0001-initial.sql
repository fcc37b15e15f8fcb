-- CaseMesh store, migration 1. Never edit once shipped: add a new migration instead.
--
-- Identifiers are interned (replica, caseRecord) so the hot tables key on small
-- integers. The change log is appended in segments of many changes (one row per
-- segment, not one per change or per operation); field state is one row per
-- written field.

-- This node: its replica ID, the schema version its data follows, its clock, and
-- the checkpoint of materialized state: fieldState and caseRecord.version reflect
-- exactly the changes that arrived before checkpointArrival. Later changes (the
-- log's tail) are durable in the change log and replayed on top by every reader
-- and writer until the next checkpoint writes them out.
CREATE TABLE replicaInfo (
    singleton          INTEGER PRIMARY KEY CHECK (singleton = 1),
    replicaID          TEXT    NOT NULL,
    schemaVersion      INTEGER NOT NULL,
    clockPhysical      INTEGER NOT NULL,
    clockLogical       INTEGER NOT NULL,
    createdAt          INTEGER NOT NULL,
    checkpointArrival  INTEGER NOT NULL DEFAULT 1,
    -- Names this change log: a peer's cursor into it is only meaningful for the
    -- same log (a store restored from an older backup gets a new identity).
    logIdentity        TEXT    NOT NULL DEFAULT (lower(hex(randomblob(16))))
);

-- Interned replica IDs (origins of changes).
CREATE TABLE replica (
    id    INTEGER PRIMARY KEY,
    name  TEXT    NOT NULL UNIQUE
);

-- Interned field paths (entity[#instance].field).
CREATE TABLE fieldName (
    id    INTEGER PRIMARY KEY,
    name  TEXT    NOT NULL UNIQUE
);

-- Every case this node holds, with its version vector: the highest sequence held
-- from each origin, encoded as sorted (replicaRef, seq) varint pairs.
CREATE TABLE caseRecord (
    id       INTEGER PRIMARY KEY,
    caseKey  TEXT    NOT NULL UNIQUE,
    version  BLOB    NOT NULL DEFAULT x''
);

-- The change log, in arrival order, in segments: each row holds changeCount
-- consecutive changes, numbered from firstArrival. body is the segment encoding
-- (see ChangeLogSegment.swift): per change its caseRecord.id, its origin's
-- replica.id and its canonical encoding less the case ID and origin at its head.
-- Append-only, so applying a batch writes new pages at the end instead of
-- rewriting pages all over a keyed table; the arrival number is the cursor sync
-- resumes from. Duplicates are caught by the case's version vector.
CREATE TABLE changeSegment (
    id            INTEGER PRIMARY KEY,
    firstArrival  INTEGER NOT NULL,
    changeCount   INTEGER NOT NULL,
    body          BLOB    NOT NULL
);
CREATE INDEX changeSegmentByArrival ON changeSegment (firstArrival);

-- Materialized merged state of every written field: the FieldState encoding with
-- replica IDs written as replica.id varints. conflicted = 1 for a register holding
-- concurrent values that a person has to resolve (kept in the row, not a table of
-- its own, so marking a conflict costs no extra B-tree write).
CREATE TABLE fieldState (
    caseRef     INTEGER NOT NULL,
    fieldRef    INTEGER NOT NULL,
    conflicted  INTEGER NOT NULL DEFAULT 0,
    state       BLOB    NOT NULL,
    PRIMARY KEY (caseRef, fieldRef)
) WITHOUT ROWID;

-- Changes received before their causal dependencies ("ask again", never "skip").
CREATE TABLE pendingChange (
    caseKey     TEXT    NOT NULL,
    origin      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    body        BLOB    NOT NULL,
    PRIMARY KEY (caseKey, origin, seq)
) WITHOUT ROWID;

-- What this node knows of each peer it syncs with: how far it has pulled the
-- peer's change log (durable together with the changes it pulled), and how the
-- last attempts went.
CREATE TABLE peerState (
    peer            TEXT    PRIMARY KEY,
    logIdentity     TEXT    NOT NULL DEFAULT '',
    pullCursor      INTEGER NOT NULL DEFAULT 1,
    lastSuccessAt   INTEGER,
    lastAttemptAt   INTEGER,
    lastError       TEXT,
    changesPulled   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
