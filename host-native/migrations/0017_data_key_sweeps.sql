-- The revoked scopes whose stored data keys are still to be deleted. A revoke destroys the
-- scopes' keys in its own transaction (from then on their data keys open for no one) and lists
-- the scopes here; the rows themselves go in batches, one transaction each, by the org's job
-- runner: a revoke of a scope with millions of stored keys commits at once instead of
-- outlasting the statement timeout (and being retried, and failing, for ever). `swept` counts
-- the scope's keys deleted so far (its audit row says how many in all).
CREATE TABLE data_key_sweeps (
    org_id   TEXT NOT NULL REFERENCES orgs (id),
    scope_id TEXT NOT NULL,
    swept    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, scope_id)
);
