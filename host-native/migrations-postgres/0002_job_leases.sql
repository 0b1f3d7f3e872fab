-- Who runs an org's job (a root rewrap or a key version retirement) now, and until when.
-- Replicas claim the lease before working on a job and renew it while they do (a heartbeat); a
-- replica that dies stops renewing, its lease expires, and another replica resumes the job
-- from the stored cursor. The same table as SQLite's migration 0013.
CREATE TABLE job_leases (
    org_id     TEXT PRIMARY KEY REFERENCES orgs (id),
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
