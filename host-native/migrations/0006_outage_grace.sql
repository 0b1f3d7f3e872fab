-- Outage grace (issue 12): how long past its unwrap cache TTL an org's cached root keys may
-- keep serving while its KMS is unreachable (never after a denial), ms. 0, the default for
-- every existing org, keeps the plain TTL.
ALTER TABLE orgs ADD COLUMN outage_grace_ms INTEGER NOT NULL DEFAULT 0;
