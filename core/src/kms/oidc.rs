//! byok as an OIDC issuer that the clouds trust (kms-wire.md section 6): so that no cloud secret
//! is stored, byok signs a short-lived token per org and exchanges it at the cloud's STS.
//!
//! What every host needs to agree on lives here, sans-IO: the issuer URL's rules, the claims of
//! a token, the discovery document and the JWKS, and the signing-key schedule ([`plan`]): when a
//! key is made, when it starts signing, and how long it stays published after it stops. The
//! host generates the RSA keys, keeps them wrapped and signs (`host-native`'s issuer).
//!
//! The schedule's promise, checked by the property tests below: a token signed at any time
//! verifies against the JWKS published at any moment of its life, and a new key is published
//! [`PUBLISH_AHEAD_MS`] before it signs anything (clouds cache JWKS documents).

use alloc::string::String;
use alloc::vec::Vec;

use serde_json::{Value, json};

/// How long a token lives. Short: byok asks for one just before each STS exchange.
pub const TOKEN_TTL_MS: u64 = 10 * 60 * 1000;
/// How long a key signs before its successor takes over.
pub const SIGNS_FOR_MS: u64 = 30 * 24 * 3600 * 1000;
/// How long a key is published before it signs: a cloud that cached the JWKS up to this long
/// ago still knows it.
pub const PUBLISH_AHEAD_MS: u64 = 24 * 3600 * 1000;
/// Clock skew allowed between byok and a cloud, on either side of a token's life.
pub const SKEW_MS: u64 = 5 * 60 * 1000;
/// How often a host runs [`plan`] (at most): a replica switches to a new signer only when it
/// runs it, so it may sign with the old key up to this long after the successor's time.
pub const REFRESH_MS: u64 = 3600 * 1000;
/// How often a host reads the schedule again (well within [`REFRESH_MS`]): the keys another
/// replica replaced at once ([`replace_all`]) reach this one within it.
pub const CHECK_MS: u64 = 60 * 1000;
/// The one algorithm all three clouds accept.
pub const ALGORITHM: &str = "RS256";
/// The audience AWS STS expects (the IAM OIDC provider's client id).
pub const AWS_STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The subject of org `org`'s tokens: what a customer's trust policy names.
pub fn subject(org: &str) -> String {
    crate::kms::aws::policy::oidc_subject(org)
}

/// Why an issuer URL was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerUrlError(pub String);

impl core::fmt::Display for IssuerUrlError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// byok's issuer URL (`--public-url`): the exact `iss` of its tokens, and where the clouds fetch
/// the discovery document. `https://host[/path]` with no port, query, fragment or trailing
/// slash (AWS refuses ports, and all three compare `iss` byte for byte); `http` only on a
/// loopback host, for tests and development.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerUrl(String);

impl IssuerUrl {
    /// Checks `url`.
    pub fn parse(url: &str) -> Result<Self, IssuerUrlError> {
        let bad = |why: &str| Err(IssuerUrlError(alloc::format!("public URL {url:?}: {why}")));
        let url = url.trim();
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return bad("must start with https://");
        };
        if rest.contains(['?', '#', '@', ' ', '\\']) {
            return bad("must have no query, fragment, user or spaces");
        }
        let rest = rest.trim_end_matches('/');
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return bad("has no host");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !authority.ends_with(']') => (h, Some(p)),
            _ => (authority, None),
        };
        let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
        if !https && !loopback {
            return bad("must be https (http only on a loopback host, for development)");
        }
        if let Some(p) = port {
            if https || !loopback {
                return bad("must have no port (AWS IAM refuses one)");
            }
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return bad("has a malformed port");
            }
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
        {
            return bad("has a malformed host");
        }
        if path
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            && !path.is_empty()
        {
            return bad("has an empty or relative path segment");
        }
        // byok serves the documents under the path itself: letters, digits and `-._~` only.
        if !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~'))
        {
            return bad("has a path with characters other than letters, digits and -._~");
        }
        Ok(Self(alloc::format!(
            "{}://{rest}",
            if https { "https" } else { "http" }
        )))
    }

    /// The URL, as tokens carry it in `iss`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Without the scheme: how AWS names the IAM OIDC provider and its condition keys.
    pub fn host_path(&self) -> &str {
        self.0.split_once("://").map_or(&self.0, |(_, r)| r)
    }

    /// The path after the host: empty, or `/` and segments of letters, digits and `-._~`.
    /// The documents are served under it (`{path}/.well-known/...`).
    pub fn path(&self) -> &str {
        let rest = self.host_path();
        rest.find('/').map_or("", |i| &rest[i..])
    }

    /// Where the JWKS is served.
    pub fn jwks_uri(&self) -> String {
        alloc::format!("{}/.well-known/jwks.json", self.0)
    }
}

/// The discovery document (`/.well-known/openid-configuration`): the fields the clouds read.
pub fn discovery(issuer: &IssuerUrl) -> Value {
    json!({
        "issuer": issuer.as_str(),
        "jwks_uri": issuer.jwks_uri(),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "claims_supported": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"],
    })
}

/// A signing key's public half and its schedule, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKey {
    /// Its key id (the `kid` of the tokens it signs).
    pub kid: String,
    /// When it was made (ms since the epoch); published from then on.
    pub created_at: u64,
    /// When it starts signing.
    pub signs_from: u64,
    /// RSA modulus, big-endian, base64url without padding.
    pub n: String,
    /// RSA public exponent, the same encoding.
    pub e: String,
}

/// The JWKS of `keys` (the ones [`plan`] says to publish): only the members Google's uploaded
/// form allows (`kty`, `alg`, `use`, `kid`, `n`, `e`).
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Value {
    let keys: Vec<Value> = keys
        .into_iter()
        .map(|k| json!({ "kty": "RSA", "alg": ALGORITHM, "use": "sig", "kid": k.kid, "n": k.n, "e": k.e }))
        .collect();
    json!({ "keys": keys })
}

/// The claims of a token for org `org` and `audience`, issued at `now_ms`.
pub fn claims(issuer: &IssuerUrl, org: &str, audience: &str, now_ms: u64, jti: &str) -> Value {
    let iat = now_ms / 1000;
    json!({
        "iss": issuer.as_str(),
        "sub": subject(org),
        "aud": audience,
        "iat": iat,
        "nbf": iat,
        "exp": iat + TOKEN_TTL_MS / 1000,
        "jti": jti,
    })
}

/// What the host does with its signing keys at a moment ([`plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Make a key now: none exists, or the signer's successor is due. The host stores it with
    /// `signs_from` = [`Plan::new_signs_from`].
    pub create: bool,
    /// When a key made now starts signing: at once if there is no signer, else
    /// [`PUBLISH_AHEAD_MS`] from now.
    pub new_signs_from: u64,
    /// The key that signs now (`None` only before the first key exists).
    pub signer: Option<String>,
    /// The keys to publish now, oldest first.
    pub publish: Vec<String>,
    /// Keys no token alive can name any more: delete them.
    pub drop: Vec<String>,
}

/// The schedule applied to `keys` at `now` (ms since the epoch). Pure: the host runs it at
/// start and periodically, and applies the answer.
pub fn plan(keys: &[SigningKey], now: u64) -> Plan {
    let mut keys: Vec<&SigningKey> = keys.iter().collect();
    keys.sort_by_key(|k| (k.signs_from, k.created_at));
    // The signer: the newest key whose signing time has come (or, if the clock went back
    // before every key's time, the oldest key: it is published, so its tokens verify).
    let signer_at = keys
        .iter()
        .rposition(|k| k.signs_from <= now)
        .or((!keys.is_empty()).then_some(0));
    let signer = signer_at.and_then(|i| keys.get(i).copied());
    // A key stops signing when its successor starts, on each replica at its next run of the
    // plan (up to [`REFRESH_MS`] later: replicas run it at their own times); it is kept while a
    // token it signed can still be presented (its life, plus skew on both sides). Dropped at
    // the successor's start alone, a replica that had not switched yet would sign with a key
    // another replica no longer publishes, and the cloud's refusal would read as a withdrawal.
    let retired_until = |i: usize| -> Option<u64> {
        keys.get(i + 1)
            .map(|next| next.signs_from + REFRESH_MS + TOKEN_TTL_MS + 2 * SKEW_MS)
    };
    let mut publish = Vec::new();
    let mut drop = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match retired_until(i) {
            Some(until) if until <= now => drop.push(k.kid.clone()),
            _ => publish.push(k.kid.clone()),
        }
    }
    let successor_exists = signer_at.is_some_and(|i| i + 1 < keys.len());
    let create = match signer {
        None => true,
        Some(s) => {
            !successor_exists && now.saturating_add(PUBLISH_AHEAD_MS) >= s.signs_from + SIGNS_FOR_MS
        }
    };
    Plan {
        create,
        new_signs_from: if signer.is_none() {
            now
        } else {
            now + PUBLISH_AHEAD_MS
        },
        signer: signer.map(|s| s.kid.clone()),
        publish,
        drop,
    }
}

/// Where a signing key is in its life at a moment ([`roles`]): the operator's view of the
/// schedule, by [`plan`]'s own rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// It signs byok's tokens now.
    Signing,
    /// Published ahead of its signing time, so that every cloud has it before its first token.
    Next,
    /// Published, no longer signing: a token it signed may still be presented.
    Retiring,
    /// No token it signed can be alive: the schedule's next run deletes it.
    Expired,
}

impl KeyRole {
    /// Its name in the API: `signing`, `next`, `retiring`, `expired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Signing => "signing",
            Self::Next => "next",
            Self::Retiring => "retiring",
            Self::Expired => "expired",
        }
    }
}

/// The role of each of `keys` at `now`, in `keys`' order.
pub fn roles(keys: &[SigningKey], now: u64) -> Vec<KeyRole> {
    let p = plan(keys, now);
    keys.iter()
        .map(|k| {
            if p.signer.as_deref() == Some(k.kid.as_str()) {
                KeyRole::Signing
            } else if p.drop.contains(&k.kid) {
                KeyRole::Expired
            } else if k.signs_from > now {
                KeyRole::Next
            } else {
                KeyRole::Retiring
            }
        })
        .collect()
}

/// The schedule when the signing keys may have leaked (the operator's emergency rotation): every
/// key goes at once, the signer and any successor alike, and a new key signs from `now`.
/// Tokens an old key signed stop verifying once each cloud fetches the JWKS again; until a
/// cloud has the new key it refuses byok's new tokens as well (its customers' keys answer as
/// withdrawn for that while): the price of cutting a leaked key off now rather than at its
/// rotation, a day after its successor is published.
pub fn replace_all(keys: &[SigningKey], now: u64) -> Plan {
    Plan {
        create: true,
        new_signs_from: now,
        signer: None,
        publish: Vec::new(),
        drop: keys.iter().map(|k| k.kid.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;
    use proptest::prelude::*;

    fn key(kid: &str, created_at: u64, signs_from: u64) -> SigningKey {
        SigningKey {
            kid: kid.into(),
            created_at,
            signs_from,
            n: "n".into(),
            e: "AQAB".into(),
        }
    }

    /// Runs the schedule from `start` in steps of `step` ms for `steps` steps, applying each
    /// plan as a host would; returns the keys and, per step, (now, signer, published).
    fn simulate(start: u64, step: u64, steps: usize) -> Vec<(u64, Option<String>, Vec<String>)> {
        let mut keys: Vec<SigningKey> = Vec::new();
        let mut seen = Vec::new();
        let mut made = 0;
        for i in 0..steps {
            let now = start + step * i as u64;
            let p = plan(&keys, now);
            if p.create {
                keys.push(key(&format!("k{made}"), now, p.new_signs_from));
                made += 1;
            }
            keys.retain(|k| !p.drop.contains(&k.kid));
            let p = plan(&keys, now);
            assert!(!p.create, "one key per plan at {now}: {keys:?} {p:?}");
            seen.push((now, p.signer, p.publish));
        }
        seen
    }

    #[test]
    fn a_key_is_next_then_signing_then_retiring_then_expired() {
        use KeyRole::*;
        let due = 1000 + SIGNS_FOR_MS - PUBLISH_AHEAD_MS;
        let (k0, k1) = (
            key("k0", 1000, 1000),
            key("k1", due, due + PUBLISH_AHEAD_MS),
        );
        let both = [k0, k1];
        assert_eq!(roles(&both[..1], 2000), [Signing]);
        assert_eq!(roles(&both, due + 1), [Signing, Next]);
        let switched = due + PUBLISH_AHEAD_MS;
        assert_eq!(roles(&both, switched), [Retiring, Signing]);
        // Kept while a token it signed can be presented, then dropped.
        let gone = switched + REFRESH_MS + TOKEN_TTL_MS + 2 * SKEW_MS;
        assert_eq!(roles(&both, gone - 1), [Retiring, Signing]);
        assert_eq!(roles(&both, gone), [Expired, Signing]);
        assert_eq!(
            [Signing, Next, Retiring, Expired].map(KeyRole::as_str),
            ["signing", "next", "retiring", "expired"]
        );
    }

    #[test]
    fn the_first_key_signs_at_once_and_a_successor_is_published_a_day_ahead() {
        let p = plan(&[], 1000);
        assert!(p.create);
        assert_eq!(p.new_signs_from, 1000);
        let k0 = key("k0", 1000, 1000);
        let p = plan(core::slice::from_ref(&k0), 2000);
        assert_eq!((p.create, p.signer.as_deref()), (false, Some("k0")));
        // The successor is due a day before k0's thirty days end.
        let due = 1000 + SIGNS_FOR_MS - PUBLISH_AHEAD_MS;
        assert!(!plan(core::slice::from_ref(&k0), due - 1).create);
        let p = plan(core::slice::from_ref(&k0), due);
        assert!(p.create);
        assert_eq!(p.new_signs_from, due + PUBLISH_AHEAD_MS);
        // Published at once, signing only a day later; k0 signs meanwhile.
        let k1 = key("k1", due, due + PUBLISH_AHEAD_MS);
        let both = vec![k0.clone(), k1.clone()];
        let p = plan(&both, due + 1);
        assert_eq!(p.signer.as_deref(), Some("k0"));
        assert_eq!(p.publish, vec!["k0", "k1"]);
        let p = plan(&both, due + PUBLISH_AHEAD_MS);
        assert_eq!(p.signer.as_deref(), Some("k1"));
        // k0 stays until its last token (and skew) is over, then goes.
        let gone = due + PUBLISH_AHEAD_MS + REFRESH_MS + TOKEN_TTL_MS + 2 * SKEW_MS;
        assert_eq!(plan(&both, gone - 1).publish, vec!["k0", "k1"]);
        let p = plan(&both, gone);
        assert_eq!(
            (p.publish, p.drop),
            (vec!["k1".to_string()], vec!["k0".to_string()])
        );
    }

    /// Replaced at once: the new key alone signs and is published, whatever the schedule had
    /// (a successor already published goes too: it may have leaked with the signer).
    #[test]
    fn an_emergency_replaces_every_key_with_one_that_signs_now() {
        let due = 1000 + SIGNS_FOR_MS - PUBLISH_AHEAD_MS;
        let keys = vec![
            key("k0", 1000, 1000),
            key("k1", due, due + PUBLISH_AHEAD_MS),
        ];
        let now = due + 5;
        let p = replace_all(&keys, now);
        assert_eq!((p.create, p.new_signs_from), (true, now));
        assert_eq!(p.drop, vec!["k0", "k1"]);
        let mut after: Vec<SigningKey> = keys
            .into_iter()
            .filter(|k| !p.drop.contains(&k.kid))
            .collect();
        after.push(key("k2", now, p.new_signs_from));
        let p = plan(&after, now);
        assert_eq!(
            (p.create, p.signer.as_deref(), p.publish, p.drop),
            (false, Some("k2"), vec!["k2".to_string()], vec![])
        );
    }

    /// Replicas run the plan at their own times: one that ran it just before the successor's
    /// start signs with the old key for up to [`REFRESH_MS`] more, and each token it signs
    /// then must verify with what any other replica publishes during the token's life.
    #[test]
    fn a_replica_that_has_not_switched_yet_still_signs_with_a_published_key() {
        let k0 = key("k0", 1000, 1000);
        let starts = 1000 + SIGNS_FOR_MS;
        let k1 = key("k1", starts - PUBLISH_AHEAD_MS, starts);
        let both = vec![k0, k1];
        assert_eq!(plan(&both, starts - 1).signer.as_deref(), Some("k0"));
        // Its last token is signed just before its next run, and presented at the end of its
        // life, on the later side of the skew.
        let last_presented = starts - 1 + REFRESH_MS + TOKEN_TTL_MS + SKEW_MS;
        for u in (starts..=last_presented).step_by(60_000) {
            assert!(
                plan(&both, u).publish.contains(&"k0".to_string()),
                "k0 dropped at {} ms after k1 took over",
                u - starts
            );
        }
    }

    proptest! {
        /// Over any run with any step (down to a minute, up to two days), every token verifies
        /// with every JWKS published during its life, and a key never signs before it was
        /// published for [`PUBLISH_AHEAD_MS`] (the first key excepted).
        #[test]
        fn tokens_verify_throughout_their_life_and_keys_are_published_ahead(
            start in 0u64..1_000_000_000_000,
            step in 60_000u64..(2 * 24 * 3600 * 1000),
            steps in 2usize..400,
        ) {
            let seen = simulate(start, step, steps);
            for (i, (t, signer, _)) in seen.iter().enumerate() {
                let signer = signer.clone().expect("a signer at every step");
                for (u, _, published) in &seen[i..] {
                    if *u > t + TOKEN_TTL_MS + SKEW_MS { break; }
                    prop_assert!(published.contains(&signer),
                        "token by {signer} at {t} not verifiable at {u}: {published:?}");
                }
                // Published since at least PUBLISH_AHEAD_MS before it signs (unless first).
                if signer != "k0" {
                    let first_seen = seen.iter().find(|(_, _, p)| p.contains(&signer)).map(|s| s.0);
                    let first_signed = seen.iter().find(|(_, s, _)| s.as_deref() == Some(signer.as_str())).map(|s| s.0);
                    if let (Some(a), Some(b)) = (first_seen, first_signed) {
                        prop_assert!(b >= a + PUBLISH_AHEAD_MS, "{signer} published at {a}, signing at {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn issuer_urls_are_https_without_port_query_or_trailing_slash() {
        let ok = IssuerUrl::parse("https://byok.vendor.example/oidc/").unwrap();
        assert_eq!(ok.as_str(), "https://byok.vendor.example/oidc");
        assert_eq!(ok.host_path(), "byok.vendor.example/oidc");
        assert_eq!(ok.path(), "/oidc");
        assert_eq!(
            IssuerUrl::parse("https://byok.vendor.example")
                .unwrap()
                .path(),
            ""
        );
        assert!(IssuerUrl::parse("https://byok.vendor.example/{x}").is_err());
        assert_eq!(
            ok.jwks_uri(),
            "https://byok.vendor.example/oidc/.well-known/jwks.json"
        );
        assert_eq!(
            IssuerUrl::parse("http://127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "byok.vendor.example",
            "http://byok.vendor.example",
            "https://byok.vendor.example:8443",
            "https://byok.vendor.example/?a=b",
            "https://byok.vendor.example/#x",
            "https://user@byok.vendor.example",
            "https://",
            "https://byok.vendor.example//x",
            "https://byok.vendor.example/../x",
            "https://byok vendor.example",
            "http://127.0.0.1:",
        ] {
            assert!(IssuerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_name_the_org_the_audience_and_a_ten_minute_life() {
        let iss = IssuerUrl::parse("https://byok.vendor.example").unwrap();
        let c = claims(&iss, "o1", AWS_STS_AUDIENCE, 1_700_000_000_123, "j1");
        assert_eq!(
            c,
            json!({ "iss": "https://byok.vendor.example", "sub": "org:o1", "aud": "sts.amazonaws.com",
                    "iat": 1_700_000_000u64, "nbf": 1_700_000_000u64, "exp": 1_700_000_600u64, "jti": "j1" })
        );
        let d = discovery(&iss);
        assert_eq!(d["issuer"], "https://byok.vendor.example");
        assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));
        let k = key("k0", 0, 0);
        assert_eq!(
            jwks([&k]),
            json!({ "keys": [{ "kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k0", "n": "n", "e": "AQAB" }] })
        );
    }
}
