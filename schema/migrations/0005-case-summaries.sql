-- One listing line per case held, written at every checkpoint for the cases the
-- checkpoint touched, so a case list is one indexed query and a page of rows
-- instead of a snapshot of every case. Derived data: it holds nothing that
-- fieldState does not, is rebuilt from fieldState by the migration that creates
-- it, and is deleted with the case's field states when the case is purged.
CREATE TABLE caseSummary (
    caseRef      INTEGER PRIMARY KEY REFERENCES caseRecord (id),
    caseKey      TEXT    NOT NULL,
    title        TEXT,
    stage        TEXT,
    riskLevel    TEXT,
    -- Institutions, each between newlines ("\nA\nB\n"), for an exact-match search.
    participants TEXT    NOT NULL DEFAULT '',
    -- Title and person names, lowercased, newline-separated, for the text search.
    searchText   TEXT    NOT NULL DEFAULT '',
    conflicts    INTEGER NOT NULL DEFAULT 0,
    changeCount  INTEGER NOT NULL DEFAULT 0,
    -- Whether the case is another case's access log (never listed).
    accessLog    INTEGER NOT NULL DEFAULT 0,
    -- Until when (ms) this node's institution may hold the case by the need-to-know
    -- rule as of the checkpoint: NULL while the fields do not change, 0 not at all.
    -- Consents only run out, so the rule is true before this time and false after.
    visibleUntil INTEGER
);
CREATE INDEX caseSummaryByKey ON caseSummary (caseKey);
