-- Withdrawal receipts read the leases issued in the last hour (`audit.at`): without this index
-- each receipt scanned the org's whole log, which a busy org grows by millions of rows a day.
CREATE INDEX audit_org_at ON audit (org_id, at);
-- Creating a token counts the org's tokens (an org keeps a bounded number).
CREATE INDEX tokens_by_org ON tokens (org_id);
