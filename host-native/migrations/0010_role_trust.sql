-- How byok assumes a key's role: `external_id` (AssumeRole with the org's external id, signed
-- with the vendor's credentials) or `oidc` (AssumeRoleWithWebIdentity with byok's own token).
ALTER TABLE cmk_keys ADD COLUMN role_trust TEXT NOT NULL DEFAULT 'external_id';
