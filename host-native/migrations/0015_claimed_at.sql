-- When the org's customer last claimed it (a new admin token, every other one revoked): the
-- setup page says whether the admin token the operator handed over may still work. Filled from
-- the log for orgs claimed before the column.
ALTER TABLE orgs ADD COLUMN claimed_at INTEGER;
UPDATE orgs SET claimed_at = (
    SELECT MAX(at) FROM audit WHERE audit.org_id = orgs.id
        AND json_extract(audit.event, '$.type') = 'token_created'
        AND json_extract(audit.event, '$.claim') = 1
);
