-- byok's store on PostgreSQL: the same tables and meaning as the SQLite schema in
-- `host-native/migrations` after all its steps (0001 to 0011), in one step. Ids are lower-case
-- hex; wrapped keys are format v1 mode-3 envelopes or KMS ciphertexts: nothing here is a key
-- in the clear. Every integer is BIGINT (times in ms, versions, counts), as the code reads i64.

CREATE TABLE orgs (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    -- 'managed' or 'cmk:N'
    default_holder      TEXT NOT NULL,
    -- the running re-encryption job (JSON), if any
    job                 TEXT,
    unwrap_cache_ttl_ms BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    external_id         TEXT,
    lease_ttl_ms        BIGINT NOT NULL DEFAULT 60000,
    outage_grace_ms     BIGINT NOT NULL DEFAULT 0,
    -- bumped by every change to the org's state, in the same transaction (replicas compare it)
    version             BIGINT NOT NULL DEFAULT 0
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
    version       BIGINT NOT NULL,
    under_version BIGINT,
    wrapped       BYTEA,
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
    version BIGINT NOT NULL,
    wrapped BYTEA NOT NULL,
    PRIMARY KEY (org_id, holder, version),
    FOREIGN KEY (org_id, holder) REFERENCES holders (org_id, holder)
);

-- Bearer tokens, by SHA-256 of the token: the tokens themselves are shown once, never stored.
CREATE TABLE tokens (
    hash         BYTEA PRIMARY KEY,
    org_id       TEXT REFERENCES orgs (id),
    role         TEXT NOT NULL CHECK (role IN ('operator', 'admin', 'service', 'auditor')),
    name         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    id           TEXT UNIQUE,
    expires_at   BIGINT,
    last_used_at BIGINT
);

-- Append-only, hash-chained per org: hash = SHA-256(prev || seq || at || event).
CREATE TABLE audit (
    org_id TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    at     BIGINT NOT NULL,
    event  TEXT NOT NULL,
    prev   BYTEA NOT NULL,
    hash   BYTEA NOT NULL,
    PRIMARY KEY (org_id, seq)
);

CREATE TABLE cmk_keys (
    org_id        TEXT NOT NULL REFERENCES orgs (id),
    n             BIGINT NOT NULL,
    name          TEXT NOT NULL,
    provider      TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    key_pasted    TEXT,
    principal     TEXT,
    role_trust    TEXT NOT NULL DEFAULT 'external_id',
    audience      TEXT,
    created_at    BIGINT NOT NULL,
    health        TEXT,
    health_detail TEXT,
    health_at     BIGINT,
    PRIMARY KEY (org_id, n)
);

CREATE TABLE data_keys (
    org_id     TEXT NOT NULL REFERENCES orgs (id),
    id         TEXT NOT NULL,
    scope_id   TEXT NOT NULL,
    version    BIGINT NOT NULL,
    wrapped    BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX data_keys_by_version ON data_keys (org_id, scope_id, version);

CREATE TABLE retire_jobs (
    org_id       TEXT PRIMARY KEY REFERENCES orgs (id),
    scope_id     TEXT NOT NULL,
    from_version BIGINT NOT NULL,
    to_version   BIGINT NOT NULL,
    total        BIGINT NOT NULL,
    done         BIGINT NOT NULL,
    started_at   BIGINT NOT NULL
);

CREATE TABLE server_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE audit_tree (
    org_id TEXT NOT NULL,
    idx    BIGINT NOT NULL,
    hash   BYTEA NOT NULL,
    PRIMARY KEY (org_id, idx)
);

CREATE TABLE audit_checkpoint (
    org_id TEXT NOT NULL,
    size   BIGINT NOT NULL,
    at     BIGINT NOT NULL,
    note   TEXT NOT NULL,
    PRIMARY KEY (org_id, size)
);

CREATE TABLE log_key (
    name       TEXT PRIMARY KEY,
    public_key BYTEA NOT NULL,
    wrapped    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_witness (
    org_id     TEXT PRIMARY KEY,
    vkey       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE audit_cosignature (
    org_id TEXT NOT NULL,
    size   BIGINT NOT NULL,
    line   TEXT NOT NULL,
    at     BIGINT NOT NULL,
    PRIMARY KEY (org_id, size, line)
);

CREATE TABLE issuer_key (
    kid        TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    signs_from BIGINT NOT NULL,
    n          TEXT NOT NULL,
    e          TEXT NOT NULL,
    wrapped    BYTEA NOT NULL
);
