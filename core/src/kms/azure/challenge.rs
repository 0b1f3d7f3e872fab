//! The vault's 401 challenge (`WWW-Authenticate: Bearer authorization="…", resource="…"`), read
//! for the tenant only and checked against the key's cloud, and the cloud's login host byok
//! asks for tokens instead (kms-wire.md section 5). Pure string handling, without the `kms`
//! feature, so that a fuzz target can drive it: the header comes from the network.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;

use crate::kms::azure::url::{Cloud, KeyUrl};
use crate::kms::error::clean_text;

/// The cloud's Entra login host.
pub const fn login_host(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Public => "login.microsoftonline.com",
        Cloud::China => "login.chinacloudapi.cn",
        Cloud::UsGov => "login.microsoftonline.us",
    }
}

/// A tenant id: a GUID, or a verified domain (`contoso.onmicrosoft.com`). It goes into the token
/// URL's path, so nothing else is accepted.
pub fn tenant_ok(t: &str) -> bool {
    let guid = t.len() == 36
        && t.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let domain = (4..=253).contains(&t.len())
        && t.contains('.')
        && !t.starts_with(['.', '-'])
        && !t.ends_with(['.', '-'])
        && !t.contains("..")
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    guid || domain
}

/// What a vault's `WWW-Authenticate: Bearer ...` challenge says, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The tenant the vault belongs to.
    pub tenant: String,
    /// The token scope to ask for.
    pub scope: String,
}

/// Reads a 401 challenge for `key`: the authority must be the key's cloud's login host, the
/// resource (or scope) the key's service in that cloud. Anything else is refused with the
/// reason: a vault cannot send byok's token requests elsewhere.
pub fn parse_challenge(key: &KeyUrl, header: &str) -> Result<Challenge, String> {
    let params = header
        .trim()
        .strip_prefix("Bearer ")
        .ok_or("not a Bearer challenge")?;
    let mut authority = None;
    let mut resource = None;
    let mut scope = None;
    for part in params.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_owned();
        match k.trim() {
            "authorization" | "authorization_uri" => authority = Some(v),
            "resource" => resource = Some(v),
            "scope" => scope = Some(v),
            _ => {}
        }
    }
    let authority = authority.ok_or("the challenge names no authority")?;
    let login = format!("https://{}/", login_host(key.cloud()));
    // Public cloud vaults have named Entra by its older alias too (`login.windows.net`, seen
    // in the Azure SDKs' recorded answers). Only the tenant is taken from the challenge: the
    // token is asked for at the cloud's own login host whichever the vault named.
    let alias = matches!(key.cloud(), Cloud::Public).then_some("https://login.windows.net/");
    let tenant = authority
        .strip_prefix(&login)
        .or_else(|| alias.and_then(|a| authority.strip_prefix(a)))
        .map(|t| t.trim_end_matches('/'))
        .filter(|t| tenant_ok(t))
        .ok_or_else(|| {
            format!(
                "the challenge's authority {} is not {login}TENANT",
                clean_text(&authority)
            )
        })?;
    let want = key.token_scope();
    let asked = match (scope, resource) {
        (Some(s), _) => s,
        (None, Some(r)) => format!("{}/.default", r.trim_end_matches('/')),
        (None, None) => return Err("the challenge names no resource".into()),
    };
    if asked != want {
        return Err(format!(
            "the challenge asks for a token for {}, not for this key's service ({want})",
            clean_text(&asked)
        ));
    }
    Ok(Challenge {
        tenant: tenant.to_owned(),
        scope: want,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn key(url: &str) -> KeyUrl {
        KeyUrl::parse(url).unwrap()
    }

    #[test]
    fn challenges_are_read_only_within_the_keys_cloud() {
        let k = key("https://acme.vault.azure.net/keys/k");
        let ok = format!(
            r#"Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net""#
        );
        assert_eq!(
            parse_challenge(&k, &ok).unwrap(),
            Challenge {
                tenant: TENANT.into(),
                scope: "https://vault.azure.net/.default".into()
            }
        );
        let with_scope = format!(
            r#"Bearer authorization_uri="https://login.microsoftonline.com/{TENANT}/", scope="https://vault.azure.net/.default""#
        );
        assert!(parse_challenge(&k, &with_scope).is_ok());
        // Entra's older alias, in the public cloud only: the tenant is read, nothing else.
        let alias = format!(
            r#"Bearer authorization="https://login.windows.net/{TENANT}", resource="https://vault.azure.net""#
        );
        assert_eq!(parse_challenge(&k, &alias).unwrap().tenant, TENANT);
        let gov_key = key("https://acme.vault.usgovcloudapi.net/keys/k");
        let alias_gov = format!(
            r#"Bearer authorization="https://login.windows.net/{TENANT}", resource="https://vault.usgovcloudapi.net""#
        );
        assert!(parse_challenge(&gov_key, &alias_gov).is_err());
        for bad in [
            format!(r#"Bearer authorization="https://login.windows.net.evil.example/{TENANT}", resource="https://vault.azure.net""#),
            r#"Bearer authorization="https://login.windows.net/../x", resource="https://vault.azure.net""#.into(),
            format!(r#"Bearer authorization="https://login.evil.example/{TENANT}", resource="https://vault.azure.net""#),
            format!(r#"Bearer authorization="https://login.microsoftonline.us/{TENANT}", resource="https://vault.azure.net""#),
            format!(r#"Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.cn""#),
            format!(r#"Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://managedhsm.azure.net""#),
            r#"Bearer authorization="https://login.microsoftonline.com/../x", resource="https://vault.azure.net""#.into(),
            r#"Bearer resource="https://vault.azure.net""#.into(),
            format!(r#"Basic authorization="https://login.microsoftonline.com/{TENANT}""#),
        ] {
            assert!(parse_challenge(&k, &bad).is_err(), "{bad}");
        }
        let hsm = key("https://acme.managedhsm.usgovcloudapi.net/keys/k");
        let gov = format!(
            r#"Bearer authorization="https://login.microsoftonline.us/{TENANT}", resource="https://managedhsm.usgovcloudapi.net""#
        );
        assert_eq!(
            parse_challenge(&hsm, &gov).unwrap().scope,
            "https://managedhsm.usgovcloudapi.net/.default"
        );
    }
}
