-- Withdrawal: attached keys are stored by the key ARN DescribeKey returned (an alias pasted is
-- kept for display only); tokens get a public id (to list and revoke them), an optional expiry
-- and their last use; the managed key's check value lets a start refuse a missing or wrong
-- managed.key instead of silently making a new one.

ALTER TABLE cmk_keys ADD COLUMN alias_arn TEXT;

ALTER TABLE tokens ADD COLUMN id TEXT;
ALTER TABLE tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER;
UPDATE tokens SET id = lower(hex(randomblob(8))) WHERE id IS NULL;
CREATE UNIQUE INDEX tokens_by_id ON tokens (id);

-- Server-wide facts, by name.
CREATE TABLE server_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
