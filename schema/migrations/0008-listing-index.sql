-- The case list's page (the listed cases this institution may see, by case ID)
-- and its total are read from this index alone: a table row (title, search text,
-- participants) is read only for a case on the page shown. Without it every list
-- request scanned every listing line, access logs included, to count them and to
-- step past the offset.
CREATE INDEX caseSummaryListed ON caseSummary (caseKey, visibleUntil) WHERE accessLog = 0;
