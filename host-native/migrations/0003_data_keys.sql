-- Data keys byok keeps for the product: wrapped under a version of their scope's key, bound to
-- their own id. The rotation job moves them to the newest version before the old one retires.
CREATE TABLE data_keys (
    org_id     TEXT NOT NULL REFERENCES orgs (id),
    id         TEXT NOT NULL,
    scope_id   TEXT NOT NULL,
    version    INTEGER NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX data_keys_by_version ON data_keys (org_id, scope_id, version);

-- A running retirement of a scope key version (at most one per org, like core's jobs): data
-- keys under `from_version` are rewrapped under `to_version` in batches, then the version is
-- retired. `done` counts rewrapped rows, for progress.
CREATE TABLE retire_jobs (
    org_id       TEXT PRIMARY KEY REFERENCES orgs (id),
    scope_id     TEXT NOT NULL,
    from_version INTEGER NOT NULL,
    to_version   INTEGER NOT NULL,
    total        INTEGER NOT NULL,
    done         INTEGER NOT NULL,
    started_at   INTEGER NOT NULL
);
