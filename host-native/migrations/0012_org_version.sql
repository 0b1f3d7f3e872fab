-- Every change to an org's state bumps its version in the same transaction: replicas over one
-- database compare it with the org they hold in memory (issue 18), and a transition refuses to
-- write over a state it did not start from.
ALTER TABLE orgs ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
