-- The case list's deadline columns: the case manager, and the statutory deadline
-- the case must meet next (schema/deadlines.json, working days under
-- schema/holidays-kr.json) with the moment it is missed, so the overdue and
-- due-soon lists are one indexed query. Derived from the stage events at every
-- checkpoint, like the rest of the line; rebuilt by this migration.
ALTER TABLE caseSummary ADD COLUMN caseManager TEXT;
ALTER TABLE caseSummary ADD COLUMN deadlineName TEXT;
ALTER TABLE caseSummary ADD COLUMN deadlineEnd INTEGER;
CREATE INDEX caseSummaryByDeadline ON caseSummary (deadlineEnd) WHERE deadlineEnd IS NOT NULL;
