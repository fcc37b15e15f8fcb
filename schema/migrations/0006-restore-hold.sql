-- A replica restored from a backup may have given sequence numbers, before it was
-- restored, to changes that only its peers now hold. Until it has synced again with
-- every peer it knew at the backup, it makes no change of its own (it would number
-- one twice): one row per peer still to sync with. Empty on a replica not restored.
CREATE TABLE restoreHold (
    peer        TEXT    PRIMARY KEY,
    restoredAt  INTEGER NOT NULL
);
