-- byok's OIDC issuer: its RSA signing keys, on the schedule of byok_core::kms::oidc::plan. The
-- private key (PKCS#8) is stored only sealed under the managed key; the public half is kept in
-- clear for the JWKS.
CREATE TABLE issuer_key (
    kid        TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    signs_from INTEGER NOT NULL,
    n          TEXT NOT NULL,
    e          TEXT NOT NULL,
    wrapped    BLOB NOT NULL
);
