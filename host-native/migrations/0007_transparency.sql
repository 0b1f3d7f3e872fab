-- The audit log as a transparency log (issue 13). Every table here is derived from, or signs,
-- the `audit` rows; see host-native/src/store/audit_tree.rs.

-- Stored RFC 6962 hashes per org, at Go tlog's stored-hash indexes (about two per row),
-- written in the same transaction as the row they cover.
CREATE TABLE audit_tree (
    org_id TEXT NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BLOB NOT NULL,
    PRIMARY KEY (org_id, idx)
);

-- Every signed checkpoint (a C2SP signed note), kept.
CREATE TABLE audit_checkpoint (
    org_id TEXT NOT NULL,
    size   INTEGER NOT NULL,
    at     INTEGER NOT NULL,
    note   TEXT NOT NULL,
    PRIMARY KEY (org_id, size)
);

-- The Ed25519 log key: its seed wrapped under the managed key, never stored in the clear.
CREATE TABLE log_key (
    name       TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
