//! How byok becomes a customer's principal: provider-neutral, and needed without the `kms`
//! feature too (the AWS policy generator, which the browser runs, names it).

/// How byok becomes the customer's principal (an AWS role; for GCP, federation is `Oidc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoleTrust {
    /// AWS `AssumeRole` signed with the vendor's credentials, presenting the org's external id.
    ExternalId,
    /// With byok's own OIDC token for the org (AWS `AssumeRoleWithWebIdentity`, GCP workload
    /// identity federation): no vendor secret.
    Oidc,
}

impl RoleTrust {
    /// Its name in the API: `external_id` or `oidc`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ExternalId => "external_id",
            Self::Oidc => "oidc",
        }
    }

    /// The inverse of [`Self::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        [Self::ExternalId, Self::Oidc]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}
