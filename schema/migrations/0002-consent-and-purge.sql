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
