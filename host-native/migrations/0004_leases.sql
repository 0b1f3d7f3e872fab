-- How long an edge lease lasts for this org, ms (0: no leases).
ALTER TABLE orgs ADD COLUMN lease_ttl_ms INTEGER NOT NULL DEFAULT 60000;
