-- Customer master keys attached to an org (holder `cmk:N`), how byok reaches them, and their
-- last health check. Identifiers only: no credentials of the customer are stored.

ALTER TABLE orgs ADD COLUMN external_id TEXT;

CREATE TABLE cmk_keys (
    org_id     TEXT NOT NULL REFERENCES orgs (id),
    n          INTEGER NOT NULL,
    name       TEXT NOT NULL,
    provider   TEXT NOT NULL CHECK (provider IN ('aws')),
    key_arn    TEXT NOT NULL,
    -- NULL: byok's own principal is granted on the key; else the customer's role it assumes
    role_arn   TEXT,
    created_at INTEGER NOT NULL,
    -- last health check: 'ok' or the error class, with its message and time
    health     TEXT,
    health_detail TEXT,
    health_at  INTEGER,
    PRIMARY KEY (org_id, n)
);
