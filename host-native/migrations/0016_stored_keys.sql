-- How many stored data keys each org keeps, kept with every insert and delete of its keys in
-- the same transaction: the server refuses keys past its limit (`--max-stored-keys`) without
-- counting the org's rows. Filled from the rows for orgs from before the column.
ALTER TABLE orgs ADD COLUMN stored_keys INTEGER NOT NULL DEFAULT 0;
UPDATE orgs SET stored_keys = (SELECT COUNT(*) FROM data_keys WHERE data_keys.org_id = orgs.id);
