//! STS `AssumeRole` with an external id: byok acts in the customer's account through a role the
//! customer created, which trusts the vendor's principal only when it presents this org's
//! external id (the confused-deputy defence). No customer secret is stored; the temporary
//! credentials live until shortly before they expire ([`needs_refresh`]).
//!
//! STS speaks the query protocol: a form-encoded `POST /` signed for service `sts`, answered in
//! XML.

use alloc::string::{String, ToString};
use core::time::Duration;

use crate::kms::aws::arn::{Endpoint, IdentifierError};
use crate::kms::aws::error::parse_error;
use crate::kms::aws::request::malformed;
use crate::kms::aws::signing::{AwsCredentials, SigningError, sign_request};
use crate::kms::error::KmsError;
use crate::kms::http::{HttpRequest, HttpResponse, form_encode};
use zeroize::Zeroizing;

/// Refresh temporary credentials this long before they expire.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A role ARN as the customer pastes it: `arn:PARTITION:iam::ACCOUNT:role/[path/]NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleArn(String);

impl RoleArn {
    /// Parses and checks a role ARN.
    pub fn parse(input: &str) -> Result<Self, IdentifierError> {
        let s = input.trim();
        let bad = |part: &'static str, expected: &'static str| IdentifierError {
            part,
            found: s.chars().take(64).flat_map(char::escape_debug).collect(),
            expected,
        };
        let rest = ["arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::"]
            .iter()
            .find_map(|p| s.strip_prefix(p))
            .ok_or_else(|| bad("role", "arn:aws:iam::ACCOUNT:role/NAME"))?;
        let (account, name) = rest
            .split_once(":role/")
            .ok_or_else(|| bad("role", "arn:aws:iam::ACCOUNT:role/NAME"))?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("account", "a 12-digit AWS account id"));
        }
        let name_ok = (1..=512).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
        if !name_ok {
            return Err(bad(
                "role name",
                "1 to 512 characters of A-Z a-z 0-9 + = , . @ _ - /",
            ));
        }
        Ok(Self(s.into()))
    }

    /// The ARN.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub use crate::kms::provider::new_external_id;

/// `AssumeRole` of `role` with `external_id`, as session `session` (2..64 of `[\w+=,.@-]`), for
/// `duration` (900..=43200 s), signed with the vendor's own credentials.
pub fn assume_role_request(
    endpoint: &Endpoint,
    role: &RoleArn,
    session: &str,
    external_id: &str,
    duration: Duration,
    creds: &AwsCredentials,
    now: Duration,
) -> Result<HttpRequest, SigningError> {
    let secs = duration.as_secs().clamp(900, 43_200).to_string();
    let body = form_encode(&[
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", role.as_str()),
        ("RoleSessionName", session),
        ("ExternalId", external_id),
        ("DurationSeconds", &secs),
    ]);
    sign_request(
        endpoint,
        "sts",
        &[(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        body.into_bytes(),
        creds,
        now,
    )
}

/// `AssumeRoleWithWebIdentity` of `role` as session `session`, presenting `token`: an OIDC
/// token byok's own issuer minted for audience `sts.amazonaws.com`. The customer's role trusts
/// byok's issuer and the org's subject (see `policy::trust_policy_oidc`), so no vendor AWS
/// credentials and no customer secret are involved. The request is not signed: the token is the
/// credential, carried in the body, which [`HttpRequest`] wipes on drop.
pub fn assume_role_with_web_identity_request(
    endpoint: &Endpoint,
    role: &RoleArn,
    session: &str,
    token: &str,
    duration: Duration,
) -> HttpRequest {
    let secs = duration.as_secs().clamp(900, 43_200).to_string();
    let body = form_encode(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role.as_str()),
        ("RoleSessionName", session),
        ("WebIdentityToken", token),
        ("DurationSeconds", &secs),
    ]);
    HttpRequest {
        method: "POST",
        url: endpoint.url().into(),
        headers: alloc::vec![
            ("host".into(), endpoint.host.clone()),
            (
                "content-type".into(),
                "application/x-www-form-urlencoded; charset=utf-8".into(),
            ),
        ],
        body: body.into_bytes(),
    }
}

/// The temporary credentials from an `AssumeRole` or `AssumeRoleWithWebIdentity` answer (both
/// carry the same `Credentials` element).
pub fn parse_assume_role(resp: &HttpResponse) -> Result<AwsCredentials, KmsError> {
    use quick_xml::events::Event;
    if !(200..300).contains(&resp.status) {
        return Err(parse_error(resp.status, &resp.headers, &resp.body));
    }
    let mut reader = quick_xml::Reader::from_reader(resp.body.as_slice());
    // The events are read into this buffer, the secret key and session token among them: sized
    // so that it never grows (a growth would free a copy unwiped), and wiped when dropped.
    let mut buf = Zeroizing::new(alloc::vec::Vec::with_capacity(resp.body.len()));
    let mut current: Option<String> = None;
    let (mut akid, mut expiration) = (None, None);
    let (mut secret, mut token): (Option<Zeroizing<String>>, Option<Zeroizing<String>>) =
        (None, None);
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => current = Some(String::from(e.local_name().as_ref())),
            Ok(Event::Text(t)) => {
                let text = Zeroizing::new(String::from(t.as_ref()));
                match current.as_deref() {
                    Some("AccessKeyId") => akid = Some(text.to_string()),
                    Some("SecretAccessKey") => secret = Some(text),
                    Some("SessionToken") => token = Some(text),
                    Some("Expiration") => expiration = Some(text.to_string()),
                    _ => {}
                }
            }
            Ok(Event::End(_)) => current = None,
            Ok(Event::Eof) => break,
            Err(_) => return Err(malformed(resp, "AssumeRole answer is not XML")),
            Ok(_) => {}
        }
        buf.clear();
    }
    let (Some(akid), Some(secret), Some(token), Some(expiration)) =
        (akid, secret, token, expiration)
    else {
        return Err(malformed(resp, "AssumeRole answer lacks credentials"));
    };
    let expires = time::OffsetDateTime::parse(
        expiration.trim(),
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|_| malformed(resp, "Expiration is not an RFC 3339 time"))?
    .unix_timestamp();
    let expires = u64::try_from(expires).map_err(|_| malformed(resp, "Expiration before 1970"))?;
    // Moved out of their wiping strings, not copied: `AwsCredentials` wipes them in turn.
    let (mut secret, mut token) = (secret, token);
    Ok(AwsCredentials::new(
        akid,
        core::mem::take(&mut *secret),
        Some(core::mem::take(&mut *token)),
        Some(expires),
    ))
}

/// Whether credentials expiring at `expires_at` (epoch seconds) must be refreshed at `now`.
/// Static credentials (no expiry) never need it.
pub fn needs_refresh(expires_at: Option<u64>, now: Duration) -> bool {
    expires_at.is_some_and(|t| now.saturating_add(REFRESH_MARGIN).as_secs() >= t)
}

#[cfg(all(test, feature = "dev"))]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn role_arns() {
        assert!(RoleArn::parse("arn:aws:iam::444455556666:role/byok-access").is_ok());
        assert!(RoleArn::parse("arn:aws:iam::444455556666:role/path/to/role").is_ok());
        for (bad, part) in [
            ("arn:aws:iam::44445555666:role/x", "account"),
            ("arn:aws:iam::444455556666:user/x", "role"),
            ("arn:aws:sts::444455556666:role/x", "role"),
            ("arn:aws:iam::444455556666:role/x y", "role name"),
            ("arn:aws:iam::444455556666:role/", "role name"),
        ] {
            assert_eq!(RoleArn::parse(bad).unwrap_err().part, part, "{bad}");
        }
    }

    #[test]
    fn request_is_a_signed_form_for_sts() {
        let key =
            crate::kms::aws::KeyArn::parse("arn:aws:kms:eu-west-1:444455556666:alias/k").unwrap();
        let ep = key.sts_endpoint();
        assert_eq!(ep.url(), "https://sts.eu-west-1.amazonaws.com/");
        let cn = crate::kms::aws::KeyArn::parse("arn:aws-cn:kms:cn-north-1:444455556666:alias/k")
            .unwrap();
        assert_eq!(cn.sts_endpoint().host, "sts.cn-north-1.amazonaws.com.cn");
        let creds = AwsCredentials::new("AKIDEXAMPLE", "secret", None, None);
        let role = RoleArn::parse("arn:aws:iam::444455556666:role/byok").unwrap();
        let req = assume_role_request(
            &ep,
            &role,
            "byok-org",
            "byok-abc&x=1",
            Duration::from_secs(3600),
            &creds,
            Duration::from_secs(1_700_000_000),
        )
        .unwrap();
        let body = core::str::from_utf8(&req.body).unwrap();
        assert!(
            body.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A444455556666%3Arole%2Fbyok"),
            "{body}"
        );
        assert!(
            body.contains("ExternalId=byok-abc%26x%3D1"),
            "values cannot inject parameters: {body}"
        );
        let auth = req.header("authorization").unwrap();
        assert!(auth.contains("/eu-west-1/sts/aws4_request"), "{auth}");
        let id = new_external_id(&mut crate::dev::TestRng::seeded(1));
        assert!(id.starts_with("byok-") && id.len() == 37);
    }

    #[test]
    fn web_identity_request_is_an_unsigned_form_carrying_the_token() {
        let key =
            crate::kms::aws::KeyArn::parse("arn:aws:kms:eu-west-1:444455556666:alias/k").unwrap();
        let role = RoleArn::parse("arn:aws:iam::444455556666:role/byok").unwrap();
        let req = assume_role_with_web_identity_request(
            &key.sts_endpoint(),
            &role,
            "byok-org",
            "eyJ.a+b/c=.sig",
            Duration::from_secs(60),
        );
        assert_eq!(req.url, "https://sts.eu-west-1.amazonaws.com/");
        assert!(req.header("authorization").is_none());
        assert_eq!(req.header("host"), Some("sts.eu-west-1.amazonaws.com"));
        let body = core::str::from_utf8(&req.body).unwrap();
        assert!(
            body.starts_with("Action=AssumeRoleWithWebIdentity&"),
            "{body}"
        );
        assert!(
            body.contains("WebIdentityToken=eyJ.a%2Bb%2Fc%3D.sig"),
            "{body}"
        );
        assert!(
            body.ends_with("DurationSeconds=900"),
            "clamped to STS's minimum: {body}"
        );
        assert!(
            !alloc::format!("{req:?}").contains("eyJ"),
            "the token stays out of Debug"
        );
    }

    #[test]
    fn answers_and_refresh() {
        let xml = b"<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult><Credentials><AccessKeyId>ASIAX</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2026-11-24T21:00:00Z</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>";
        let c = parse_assume_role(&HttpResponse {
            status: 200,
            headers: vec![],
            body: xml.to_vec(),
        })
        .unwrap();
        assert_eq!(c.access_key_id, "ASIAX");
        assert_eq!(c.expires_at, Some(1_795_554_000));
        assert!(!needs_refresh(
            c.expires_at,
            Duration::from_secs(1_795_554_000 - 600)
        ));
        assert!(needs_refresh(
            c.expires_at,
            Duration::from_secs(1_795_554_000 - 200)
        ));
        assert!(!needs_refresh(None, Duration::from_secs(u64::MAX / 2)));
        let denied = b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error></ErrorResponse>";
        let e = parse_assume_role(&HttpResponse {
            status: 403,
            headers: vec![],
            body: denied.to_vec(),
        })
        .unwrap_err();
        assert_eq!(e.kind, crate::kms::KmsErrorKind::AccessDenied);
        let partial = b"<AssumeRoleResponse><Credentials><AccessKeyId>A</AccessKeyId></Credentials></AssumeRoleResponse>";
        let e = parse_assume_role(&HttpResponse {
            status: 200,
            headers: vec![],
            body: partial.to_vec(),
        })
        .unwrap_err();
        assert_eq!(e.kind, crate::kms::KmsErrorKind::Malformed);
    }
}
