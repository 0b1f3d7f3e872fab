-- byok's store. Ids are lower-case hex; wrapped keys are format v1 mode-3 envelopes or KMS
-- ciphertexts: nothing here is a key in the clear.

CREATE TABLE orgs (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    -- 'managed' or 'cmk:N'
    default_holder      TEXT NOT NULL,
    -- the running re-encryption job (JSON), if any
    job                 TEXT,
    unwrap_cache_ttl_ms INTEGER NOT NULL,
    created_at          INTEGER NOT NULL
);

CREATE TABLE scopes (
    org_id    TEXT NOT NULL REFERENCES orgs (id),
    id        TEXT NOT NULL,
    parent_id TEXT,
    name      TEXT NOT NULL,
    state     TEXT NOT NULL CHECK (state IN ('active', 'paused', 'revoked')),
    PRIMARY KEY (org_id, id)
);

-- Live key versions. For the org scope `wrapped` is NULL (root versions are held by holders);
-- for a child scope it is the key wrapped under version `under_version` of the parent's key.
CREATE TABLE scope_keys (
    org_id        TEXT NOT NULL,
    scope_id      TEXT NOT NULL,
    version       INTEGER NOT NULL,
    under_version INTEGER,
    wrapped       BLOB,
    PRIMARY KEY (org_id, scope_id, version),
    FOREIGN KEY (org_id, scope_id) REFERENCES scopes (org_id, id)
);

CREATE TABLE holders (
    org_id TEXT NOT NULL REFERENCES orgs (id),
    holder TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'ready', 'disabled')),
    PRIMARY KEY (org_id, holder)
);

CREATE TABLE root_copies (
    org_id  TEXT NOT NULL,
    holder  TEXT NOT NULL,
    version INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    PRIMARY KEY (org_id, holder, version),
    FOREIGN KEY (org_id, holder) REFERENCES holders (org_id, holder)
);

-- Bearer tokens, by SHA-256 of the token: the tokens themselves are shown once, never stored.
CREATE TABLE tokens (
    hash       BLOB PRIMARY KEY,
    org_id     TEXT REFERENCES orgs (id),
    role       TEXT NOT NULL CHECK (role IN ('operator', 'admin', 'service', 'auditor')),
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Append-only, hash-chained per org: hash = SHA-256(prev || seq || at || event).
CREATE TABLE audit (
    org_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    event  TEXT NOT NULL,
    prev   BLOB NOT NULL,
    hash   BLOB NOT NULL,
    PRIMARY KEY (org_id, seq)
);
