-- CaseMesh store, migration 2: case schema version 2 (consent entity, data
-- categories, access log, keyed resident-number hash) and purge on leave.
-- Never edit once shipped: add a new migration instead.

-- Schema 2 only adds entities and fields to schema 1, so every stored change
-- stays valid: the store moves to version 2 in place.
UPDATE replicaInfo SET schemaVersion = 2 WHERE schemaVersion = 1;

-- Cases this node held and had to give up (its institution left the case, or
-- the consent covering it was withdrawn or expired). The case's changes, field
-- states and pending changes are gone; what stays is the case ID, when and why,
-- the version vector held at the purge (so the same changes coming back through a
-- relay are recognised and dropped), and the state of the fields that decide
-- entitlement (participants, lead, consents' recipients, categories and validity:
-- institution IDs and dates, no personal data) so that a later change which
-- brings the institution back can be recognised. caseRecord keeps the row with an
-- empty version.
CREATE TABLE caseTombstone (
    caseRef      INTEGER PRIMARY KEY REFERENCES caseRecord(id),
    purgedAt     INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    version      BLOB    NOT NULL,
    gateFields   BLOB    NOT NULL
);

-- Signed changes. An origin node seals its own changes in the order it logged
-- them, at most 4096 at a time: the signature (ECDSA P-256 with the key of the
-- node's certificate) covers the origin, the seal's number and the SHA-256 of each
-- change's canonical encoding, in order (digests, 32 bytes each). Receivers verify
-- a seal before applying its changes and keep it, with all its digests, to pass
-- the proof on when they relay the changes. Each stored change names its seal and
-- its place in it (see ChangeLogSegment.swift, format 2).
CREATE TABLE seal (
    id          INTEGER PRIMARY KEY,
    originRef   INTEGER NOT NULL,
    number      INTEGER NOT NULL,
    signature   BLOB    NOT NULL,
    digests     BLOB    NOT NULL,
    UNIQUE (originRef, number)
);

-- This node's own changes are sealed up to this arrival number in the change log.
ALTER TABLE replicaInfo ADD COLUMN sealedThroughArrival INTEGER NOT NULL DEFAULT 1;

-- The certificates of the nodes whose seals this node has verified (checked
-- against the consortium CA and CRL when they arrived), to verify their seals and
-- to pass on with their changes.
CREATE TABLE signer (
    replica      TEXT PRIMARY KEY,
    publicKey    BLOB NOT NULL,
    certificate  BLOB NOT NULL
) WITHOUT ROWID;

-- Received changes refused because they could not be authenticated (no seal, a
-- seal that does not verify, an unknown signer) or because their origin's
-- institution is not a participant of their case: kept aside, reported by
-- 'casemesh quarantine', never applied.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    caseKey     TEXT    NOT NULL,
    origin      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    sender      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    receivedAt  INTEGER NOT NULL,
    body        BLOB    NOT NULL
);

-- A change waiting for its dependencies keeps the seal that authenticated it.
ALTER TABLE pendingChange ADD COLUMN sealRef INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pendingChange ADD COLUMN leaf INTEGER NOT NULL DEFAULT 0;

-- Every change that added an institution to a case's participants, by the
-- change's dot: a received change is applied only if its origin's institution
-- had been added in what the change had seen (its context), or the change opens
-- the case. Written with the change, in the same transaction.
CREATE TABLE participantGrant (
    caseRef      INTEGER NOT NULL,
    institution  TEXT    NOT NULL,
    originRef    INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (caseRef, institution, originRef, seq)
) WITHOUT ROWID;
