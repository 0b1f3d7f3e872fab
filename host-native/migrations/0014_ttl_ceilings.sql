-- The most an org's admin may set its unwrap cache TTL and lease TTL to: what the operator
-- created the org with. An admin may tighten the withdrawal bound down to 0 and loosen it back
-- up to these, never past them.
ALTER TABLE orgs ADD COLUMN max_unwrap_cache_ttl_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN max_lease_ttl_ms INTEGER NOT NULL DEFAULT 0;
UPDATE orgs SET max_unwrap_cache_ttl_ms = unwrap_cache_ttl_ms, max_lease_ttl_ms = lease_ttl_ms;
