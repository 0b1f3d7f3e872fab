-- The check value of each root key version (the org scope's rows of scope_keys): a MAC of the
-- root keyed from the managed key, which this database never holds. A root a holder gives back
-- is used only if it matches, so a copy replaced here (an Azure RSA key wraps with its public
-- half, which anyone can hold) is refused instead of having new keys wrapped under a root of
-- the writer's choosing. Versions made before this migration have none (NULL): byok refuses
-- them unless started with accept_unchecked_roots, and records their check on first use.
ALTER TABLE scope_keys ADD COLUMN root_check BYTEA;
