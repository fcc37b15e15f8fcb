-- CaseMesh store, migration 3: departure notices, deliveries and one quarantine
-- entry per change. Never edit once shipped: add a new migration instead.

-- A departure notice is the change that ended this node's institution's right to
-- a case, as its sender passes it on: only the fields the need-to-know rule reads
-- (participants, lead, each consent's recipients, basis, categories and end) are
-- in it, every other operation withheld as its digest, so the seal still verifies
-- and nothing else of the case travels. When this node holds the case but not
-- everything the notice had seen, the notice cannot be merged; it is kept here
-- and its rule fields are laid over the case's when the node decides whether it
-- may still hold the case (CaseStore+Purge.swift).
CREATE TABLE departureNotice (
    caseKey  TEXT    NOT NULL,
    origin   TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    body     BLOB    NOT NULL,
    PRIMARY KEY (caseKey, origin, seq)
) WITHOUT ROWID;

-- This node's own changes of a case that have gone out whole: the highest own
-- sequence number of the case that a peer acknowledged having (it was in a page
-- the peer applied) or that an exported bundle carries. A node purges a case its
-- institution may no longer hold only once every change it wrote to the case has
-- gone out, so leaving a case never loses its own work.
CREATE TABLE ownDelivery (
    caseRef  INTEGER PRIMARY KEY REFERENCES caseRecord(id),
    seq      INTEGER NOT NULL
);

-- One quarantine entry per change (case, origin, seq): a change refused again
-- refreshes its entry; an entry is resolved when the genuine change is applied.
DELETE FROM quarantine WHERE id NOT IN (SELECT MIN(id) FROM quarantine GROUP BY caseKey, origin, seq);
CREATE UNIQUE INDEX quarantineChange ON quarantine (caseKey, origin, seq);
ALTER TABLE quarantine ADD COLUMN resolvedAt INTEGER;
ALTER TABLE quarantine ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;

-- What 'casemesh quarantine retry' needs to verify a change again once the reason
-- may be gone (its signer's certificate could not be checked: no CA was given, or
-- the certificate was not trusted yet): the seal that came with it, with every
-- leaf's digest, and the certificates its signers sent. Only changes refused for
-- an unverified signer keep a seal; forgeries and unauthorised writes do not.
CREATE TABLE quarantineSeal (
    id         INTEGER PRIMARY KEY,
    origin     TEXT    NOT NULL,
    number     INTEGER NOT NULL,
    signature  BLOB    NOT NULL,
    digests    BLOB    NOT NULL,
    UNIQUE (origin, number)
);
ALTER TABLE quarantine ADD COLUMN sealRef INTEGER;
ALTER TABLE quarantine ADD COLUMN leaf INTEGER;
CREATE TABLE quarantineSigner (
    replica      TEXT PRIMARY KEY,
    certificate  BLOB NOT NULL
) WITHOUT ROWID;
