//! A KMS's answer, classified: what went wrong in byok's terms, the provider's own code and
//! message, and what to do about it.

use alloc::string::String;

use crate::api_code::ApiCode;
use core::fmt;

/// What kind of failure a KMS reported, whatever the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KmsErrorKind {
    /// byok's principal may not use the key (policy, grant, role trust, credentials, signature).
    AccessDenied,
    /// The key is disabled.
    KeyDisabled,
    /// The key does not exist (or is not visible to byok's principal in that region/account).
    KeyNotFound,
    /// The key is scheduled for deletion.
    KeyPendingDeletion,
    /// The wrapped key does not decrypt under this key and context.
    InvalidCiphertext,
    /// Too many requests: retry later.
    Throttled,
    /// The KMS is temporarily unavailable: retry later.
    Unavailable,
    /// The KMS refused the request as invalid.
    Malformed,
    /// This server lacks a setting the key needs (its OIDC issuer, a vendor signing key), or
    /// its own credential was refused (the vendor's GCP service account, the vendor's Entra
    /// app): byok's operator's doing, never the customer's, so it is no withdrawal and no
    /// outage.
    Unconfigured,
}

impl KmsErrorKind {
    /// Whether retrying the same request later may succeed.
    pub const fn is_transient(self) -> bool {
        matches!(self, Self::Throttled | Self::Unavailable)
    }

    /// Whether the KMS said the customer withdrew (access denied, key disabled, not found or
    /// pending deletion) or the key no longer opens the copy: cached keys of the org are
    /// evicted at once, and no outage grace applies ([`crate::grace`]).
    pub const fn is_denial(self) -> bool {
        matches!(
            crate::grace::Failure::of(self),
            crate::grace::Failure::Denied
        )
    }

    /// The API error code of a call that failed (after retries) with this kind. Throttled and
    /// unavailable are one code: to a caller both mean "retry later".
    pub const fn api_code(self) -> ApiCode {
        match self {
            Self::AccessDenied => ApiCode::KmsAccessDenied,
            Self::KeyDisabled => ApiCode::KmsKeyDisabled,
            Self::KeyNotFound => ApiCode::KmsKeyNotFound,
            Self::KeyPendingDeletion => ApiCode::KmsKeyPendingDeletion,
            Self::InvalidCiphertext => ApiCode::KmsInvalidCiphertext,
            Self::Throttled | Self::Unavailable => ApiCode::KmsUnavailable,
            Self::Malformed => ApiCode::KmsError,
            Self::Unconfigured => ApiCode::NotConfigured,
        }
    }

    /// Every kind.
    pub const ALL: [Self; 9] = [
        Self::AccessDenied,
        Self::KeyDisabled,
        Self::KeyNotFound,
        Self::KeyPendingDeletion,
        Self::InvalidCiphertext,
        Self::Throttled,
        Self::Unavailable,
        Self::Malformed,
        Self::Unconfigured,
    ];

    /// The kind whose [`Self::as_str`] is `name` (a key's stored health read back), if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// A short name for logs and key health.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::KeyDisabled => "key_disabled",
            Self::KeyNotFound => "key_not_found",
            Self::KeyPendingDeletion => "key_pending_deletion",
            Self::InvalidCiphertext => "invalid_ciphertext",
            Self::Throttled => "throttled",
            Self::Unavailable => "unavailable",
            Self::Malformed => "malformed",
            Self::Unconfigured => "unconfigured",
        }
    }

    /// What the customer's admin (or the operator) should do.
    pub const fn hint(self) -> &'static str {
        match self {
            Self::AccessDenied => {
                "grant byok's principal kms:Encrypt, kms:Decrypt and kms:DescribeKey on the key (use the policy byok generates), and, through a role, check its trust policy: byok's OIDC provider and this org's subject (role_trust oidc) or the org's external id (external_id)"
            }
            Self::KeyDisabled => "enable the key in your KMS (for AWS: EnableKey)",
            Self::KeyNotFound => {
                "check the key identifier, its region and account; the key may have been deleted"
            }
            Self::KeyPendingDeletion => {
                "cancel the scheduled deletion (for AWS: CancelKeyDeletion), then enable the key"
            }
            Self::InvalidCiphertext => {
                "the wrapped key does not match this key or encryption context; it may have been wrapped by another key"
            }
            Self::Throttled => "the KMS request quota was reached; byok retries with backoff",
            Self::Unavailable => "the KMS is temporarily unavailable; byok retries",
            Self::Malformed => {
                "the KMS refused the request as invalid: check the server clock, else report this with the provider code"
            }
            Self::Unconfigured => {
                "byok's operator sets what the message names and restarts the server; nothing on your key needs to change"
            }
        }
    }
}

impl KmsErrorKind {
    /// The class of an HTTP status when the answer's own code says nothing byok knows: 401 and
    /// 403 refuse access, 404 is a missing key, 429 throttling, 5xx an outage, anything else
    /// a request the KMS found malformed.
    pub const fn of_status(status: u16) -> Self {
        match status {
            401 | 403 => Self::AccessDenied,
            404 => Self::KeyNotFound,
            429 => Self::Throttled,
            500..=599 => Self::Unavailable,
            _ => Self::Malformed,
        }
    }
}

/// A KMS failure: the class, the provider's code and message, the HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsError {
    /// byok's classification.
    pub kind: KmsErrorKind,
    /// The provider: `aws`, `gcp`, `azure`.
    pub provider: &'static str,
    /// The provider's error code, e.g. `AccessDeniedException` (empty if it sent none).
    pub code: String,
    /// The provider's message, control characters escaped, at most 300 characters.
    pub message: String,
    /// The HTTP status of the answer.
    pub status: u16,
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} kms: {} ({} {}",
            self.provider,
            self.kind.as_str(),
            self.status,
            self.code
        )?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        write!(f, "); {}", self.fix())
    }
}

impl KmsError {
    /// What to do about it, in the provider's terms when byok speaks that provider.
    pub fn fix(&self) -> alloc::borrow::Cow<'static, str> {
        #[cfg(feature = "kms")]
        if let Some(p) = crate::kms::provider::provider(self.provider) {
            return p.fix(self.kind).into();
        }
        self.kind.hint().into()
    }
}

impl core::error::Error for KmsError {}

/// Escapes control characters and keeps at most 300 characters of provider text, so a hostile
/// or broken KMS answer cannot inject lines into logs or bloat error messages.
pub fn clean_text(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= 300 {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::KmsErrorKind;

    /// A key's stored health reads back as the kind that wrote it; `ok` is no kind.
    #[test]
    fn every_kind_reads_back_from_its_name() {
        for k in KmsErrorKind::ALL {
            assert_eq!(KmsErrorKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(KmsErrorKind::parse("ok"), None);
        assert_eq!(KmsErrorKind::parse(""), None);
    }
}
