-- When the org's customer last claimed it (a new admin token, every other one revoked): the
-- setup page says whether the admin token the operator handed over may still work. Filled from
-- the log for orgs claimed before the column.
ALTER TABLE orgs ADD COLUMN claimed_at BIGINT;
UPDATE orgs SET claimed_at = (
    SELECT MAX(at) FROM audit WHERE audit.org_id = orgs.id
        AND (audit.event::json ->> 'type') = 'token_created'
        AND (audit.event::json ->> 'claim') = 'true'
);
