-- Each audit row's tag: a MAC of its leaf keyed by a key derived from the managed key, which
-- the database never holds (core `audit_log::row_tag`). A row written into the database
-- directly has none that checks out, and is not signed into a checkpoint. Rows from before
-- this column get theirs at the next start, once (`audit_row_tags_complete`).
ALTER TABLE audit ADD COLUMN tag BLOB;
