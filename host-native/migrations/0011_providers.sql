-- Keys of any provider behind the seam (`aws`, `gcp`, ...). The table is rebuilt because SQLite
-- cannot drop the old `provider IN ('aws')` check: the service validates provider names now
-- (core's registry), so adding a provider needs no migration. Columns renamed to what they hold
-- for every provider:
--   key_id     the key as its KMS names it (AWS key ARN, GCP CryptoKey name)
--   key_pasted the identifier as pasted when it differs (an AWS alias), for display only
--   principal  the customer's principal byok becomes (AWS role ARN, GCP service account email)
--   audience   where byok's OIDC token is exchanged (GCP workload identity pool provider)
CREATE TABLE cmk_keys_v2 (
    org_id        TEXT NOT NULL REFERENCES orgs (id),
    n             INTEGER NOT NULL,
    name          TEXT NOT NULL,
    provider      TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    key_pasted    TEXT,
    principal     TEXT,
    role_trust    TEXT NOT NULL DEFAULT 'external_id',
    audience      TEXT,
    created_at    INTEGER NOT NULL,
    health        TEXT,
    health_detail TEXT,
    health_at     INTEGER,
    PRIMARY KEY (org_id, n)
);

INSERT INTO cmk_keys_v2 (org_id, n, name, provider, key_id, key_pasted, principal, role_trust,
                         created_at, health, health_detail, health_at)
SELECT org_id, n, name, provider, key_arn, alias_arn, role_arn, role_trust,
       created_at, health, health_detail, health_at
FROM cmk_keys;

DROP TABLE cmk_keys;
ALTER TABLE cmk_keys_v2 RENAME TO cmk_keys;
