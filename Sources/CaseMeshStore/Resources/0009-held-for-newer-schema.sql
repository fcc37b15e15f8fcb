-- Operations a received change makes on fields this node's case schema does not
-- have: the change was written under a newer schema (institutions upgrade on
-- different days). The change itself is in the change log, so it is relayed to
-- peers, and its other operations are merged; the operations named here wait
-- until this node's schema has their fields, and are merged then, in this order
-- (the order the changes applied in, a causal order).
CREATE TABLE heldChange (
  id INTEGER PRIMARY KEY,
  caseKey TEXT NOT NULL,
  origin TEXT NOT NULL,
  seq INTEGER NOT NULL,
  -- the change's canonical encoding
  body BLOB NOT NULL,
  -- the indices of the held operations, comma-separated
  operations TEXT NOT NULL,
  UNIQUE (caseKey, origin, seq)
);
