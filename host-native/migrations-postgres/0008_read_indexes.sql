-- Withdrawal receipts read the leases issued in the last hour (`audit.at`): without this index
-- each receipt scanned the org's whole log, which a busy org grows by millions of rows a day.
-- With `seq`, it answers the window's first row by itself; the rows are then read from there
-- by the primary key.
CREATE INDEX audit_org_at ON audit (org_id, at, seq);
-- Creating a token counts the org's tokens (an org keeps a bounded number).
CREATE INDEX tokens_by_org ON tokens (org_id);
