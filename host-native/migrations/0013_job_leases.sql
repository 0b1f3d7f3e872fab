-- Who runs an org's job (a root rewrap or a key version retirement) now, and until when
-- (issue 18). Replicas over one database claim the lease before working on a job and renew it
-- while they do (a heartbeat); a replica that dies stops renewing, its lease expires, and
-- another replica resumes the job from the stored cursor.
CREATE TABLE job_leases (
    org_id     TEXT PRIMARY KEY REFERENCES orgs (id),
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
