-- Witness cosignatures (C2SP tlog-cosignature): the witness key an org registered, and the
-- cosignatures it posted, served after byok's own signature on the checkpoint they cosign.
CREATE TABLE audit_witness (
    org_id     TEXT PRIMARY KEY,
    vkey       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE audit_cosignature (
    org_id TEXT NOT NULL,
    size   INTEGER NOT NULL,
    line   TEXT NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (org_id, size, line)
);
