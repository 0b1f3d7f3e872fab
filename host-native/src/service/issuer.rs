//! byok as an OIDC issuer (`--public-url`): RSA signing keys on core's schedule
//! ([`byok_core::kms::oidc::plan`]), each private key sealed under the managed key at rest and
//! opened only to sign; the discovery document and JWKS served at `/.well-known/`; short-lived
//! tokens per org, whose audience each cloud names. What they buy: a customer's cloud trusts
//! byok's issuer for its org's subject, and byok stores no cloud secret.

use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64ct::{Base64UrlUnpadded, Encoding};
use byok_core::Context;
use byok_core::envelope::{decrypt, encrypt};
use byok_core::kms::oidc::{self, IssuerUrl, SigningKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pkcs8::PrivateKeyInfo;
use pkcs8::der::Decode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Result, Service, ServiceError};
use crate::store::{self, issuer as keys};

/// What replacing the issuer's keys at once did ([`Service::replace_issuer_keys`]).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IssuerKeysReplaced {
    /// The new key's id: it signs from now, and is the only one published.
    pub kid: String,
    /// The keys deleted: no longer published, never signing again.
    pub dropped: Vec<String>,
}

/// A signing key as the operator sees it ([`Service::issuer_keys`]).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IssuerKeyView {
    /// Its key id: the `kid` of the tokens it signs, and of its entry in the JWKS.
    pub kid: String,
    /// When it was made (ms since the epoch).
    pub created_at: u64,
    /// When it starts (or started) signing (ms since the epoch).
    pub signs_from: u64,
    /// `signing`, `next` (published ahead of its time), `retiring` (published, no longer
    /// signing: its tokens may still be presented), `expired` (the schedule's next run deletes
    /// it), or `refused`: a row byok cannot open under the managed key, or whose key is not the
    /// one its id names. A refused row is never published nor used; someone who can write the
    /// database put it there, or the managed key is not the one that sealed it.
    pub role: String,
}

/// byok's issuer keys ([`Service::issuer_keys`]).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IssuerKeys {
    /// Every stored key, oldest first.
    pub keys: Vec<IssuerKeyView>,
    /// The key the replica that answered signs with now (`null` before its first run of the
    /// schedule). Another replica switches within a minute of this one.
    pub signer_here: Option<String>,
    /// When that replica last ran the schedule (ms since the epoch).
    pub refreshed_at: Option<u64>,
}

/// What the context of a sealed signing key says it is.
const PURPOSE: &str = "oidc-signing-key";

/// The issuer's state between refreshes: the signing key and what is published.
pub struct Issuer {
    url: IssuerUrl,
    active: RwLock<Option<Arc<Active>>>,
}

struct Active {
    kid: String,
    key: EncodingKey,
    jwks: Value,
    /// When the schedule last ran here (ms since the epoch).
    refreshed_ms: u64,
}

/// How long a signer is used without a refresh. The schedule deletes a key once no token of
/// it can be alive, counting a replica that has not refreshed for up to [`oidc::REFRESH_MS`];
/// one whose refreshes keep failing (the database away) past that could sign with a key the
/// others no longer publish, and the customer's cloud would refuse its tokens as if the
/// customer had withdrawn. It stops signing instead (an outage of byok's issuer) until a
/// refresh succeeds. The skew allowance is within the schedule's own margin.
const SIGNS_WITHOUT_REFRESH_MS: u64 = oidc::REFRESH_MS + oidc::SKEW_MS;

/// How long a replica publishes its JWKS without a refresh: five runs of the schedule. A
/// replacement (`replace-keys`) reaches the replicas that read the database within
/// [`oidc::CHECK_MS`]; one that cannot (the database away from it while the clouds still reach
/// it) would go on publishing the keys the operator cut off because one may have leaked, and a
/// cloud that fetched the JWKS from it would trust tokens the leaked key signs. It answers
/// `503 database_unavailable` instead, and a cloud keeps the JWKS it had or asks again.
const PUBLISHES_WITHOUT_REFRESH_MS: u64 = 5 * oidc::CHECK_MS;

impl Issuer {
    /// An issuer at `url`, with no key loaded yet ([`Service::refresh_issuer`] loads one).
    pub fn new(url: IssuerUrl) -> Self {
        Self {
            url,
            active: RwLock::new(None),
        }
    }

    /// Its URL.
    pub fn url(&self) -> &IssuerUrl {
        &self.url
    }

    fn active(&self) -> Option<Arc<Active>> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A token for org `org` and `audience`, valid [`oidc::TOKEN_TTL_MS`]. The error names what
    /// is missing, never a key byte.
    pub fn mint(
        &self,
        org: &str,
        audience: &str,
    ) -> std::result::Result<Zeroizing<String>, String> {
        let active = self
            .active()
            .ok_or_else(|| "the OIDC issuer has no key loaded".to_owned())?;
        let now = u64::try_from(store::now_ms()).unwrap_or(0);
        if now.saturating_sub(active.refreshed_ms) > SIGNS_WITHOUT_REFRESH_MS {
            return Err(format!(
                "the OIDC issuer's keys were last refreshed {} min ago (is the database reachable?); it signs nothing until a refresh succeeds, since its key may no longer be published",
                now.saturating_sub(active.refreshed_ms) / 60_000
            ));
        }
        let jti = Base64UrlUnpadded::encode_string(&rand::random::<[u8; 16]>());
        let claims = oidc::claims(&self.url, org, audience, now, &jti);
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(active.kid.clone());
        jsonwebtoken::encode(&header, &claims, &active.key)
            .map(Zeroizing::new)
            .map_err(|_| "the OIDC issuer could not sign".to_owned())
    }
}

/// AWS STS gets byok's token with its audience (`sts.amazonaws.com`).
impl crate::credentials::TokenSource for Issuer {
    fn token(&self, org: &str, audience: &str) -> std::result::Result<Zeroizing<String>, String> {
        self.mint(org, audience)
    }
}

/// Whether `active` was read too long ago to be published (`PUBLISHES_WITHOUT_REFRESH_MS`).
fn publishes_nothing(active: &Active) -> bool {
    let now = u64::try_from(store::now_ms()).unwrap_or(0);
    now.saturating_sub(active.refreshed_ms) > PUBLISHES_WITHOUT_REFRESH_MS
}

fn context(kid: &str) -> Result<Context> {
    Context::from_pairs([("byok:purpose", PURPOSE), ("byok:kid", kid)])
        .map_err(|_| ServiceError::Invalid("an issuer key id cannot be bound".into()))
}

fn corrupt(why: &str) -> ServiceError {
    ServiceError::Store(store::StoreError::Corrupt(format!("issuer key: {why}")))
}

/// A new RSA-2048 key: its public half (kid = the RFC 7638 thumbprint) and its PKCS#8 DER.
fn generate(created_at: u64, signs_from: u64) -> Result<(SigningKey, Zeroizing<Vec<u8>>)> {
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| corrupt("RSA generation failed"))?;
    let der = pair
        .as_der()
        .map_err(|_| corrupt("PKCS#8 encoding failed"))?;
    let pkcs8 = Zeroizing::new(der.as_ref().to_vec());
    let (kid, n, e) = public_half(&pair);
    Ok((
        SigningKey {
            kid,
            created_at,
            signs_from,
            n,
            e,
        },
        pkcs8,
    ))
}

/// The key pair's public half as the JWKS gives it: its kid (the RFC 7638 thumbprint), `n` and
/// `e`.
fn public_half(pair: &KeyPair) -> (String, String, String) {
    let public = pair.public_key();
    let n = Base64UrlUnpadded::encode_string(public.modulus().big_endian_without_leading_zero());
    let e = Base64UrlUnpadded::encode_string(public.exponent().big_endian_without_leading_zero());
    // RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let kid = Base64UrlUnpadded::encode_string(&Sha256::digest(canonical.as_bytes()));
    (kid, n, e)
}

/// The signing key from its PKCS#8 DER: jsonwebtoken signs RS256 from the PKCS#1
/// `RSAPrivateKey` inside it.
fn encoding_key(pkcs8: &[u8]) -> Result<EncodingKey> {
    let info = PrivateKeyInfo::from_der(pkcs8).map_err(|_| corrupt("not PKCS#8"))?;
    Ok(EncodingKey::from_rsa_der(info.private_key))
}

impl Service {
    /// Applies the signing-key schedule now: makes a key when one is due (sealed under the
    /// managed key), deletes keys no live token can name, and loads the signer and the JWKS.
    /// Called at start and periodically; does nothing without `--public-url`.
    pub async fn refresh_issuer(&self) -> Result<()> {
        self.apply_schedule(oidc::plan).await.map(drop)
    }

    /// Replaces every signing key at once with a new one that signs from now (core's
    /// [`oidc::replace_all`]): the operator's answer to a key that may have leaked. The
    /// other replicas read it within [`oidc::CHECK_MS`]. `NotConfigured` without
    /// `--public-url`.
    pub async fn replace_issuer_keys(&self) -> Result<IssuerKeysReplaced> {
        if self.issuer.is_none() {
            return Err(ServiceError::NotConfigured(
                "byok is not an OIDC issuer here: the operator sets --public-url (BYOK_PUBLIC_URL)"
                    .into(),
            ));
        }
        let (created, dropped) = self.apply_schedule(oidc::replace_all).await?;
        let kid = created.ok_or_else(|| corrupt("no key made by the replacement"))?;
        tracing::warn!(kid = %kid, dropped = ?dropped, "issuer keys replaced at once: tokens the dropped keys signed stop verifying as each cloud fetches the JWKS again");
        Ok(IssuerKeysReplaced { kid, dropped })
    }

    /// Every stored signing key with its role now (core's [`oidc::roles`]), each opened under
    /// the managed key as the schedule opens them, and the key this replica signs with: the
    /// operator's check that a replacement took, or that no foreign row was slipped in.
    /// `NotFound` without `--public-url`, as the issuer's documents are then.
    pub async fn issuer_keys(&self) -> Result<IssuerKeys> {
        let issuer = self.issuer.as_ref().ok_or_else(|| {
            ServiceError::NotFound(
                "byok is not an OIDC issuer here: the operator sets --public-url (BYOK_PUBLIC_URL)"
                    .into(),
            )
        })?;
        let stored = {
            let mut conn = self
                .store
                .pool()
                .acquire()
                .await
                .map_err(store::StoreError::from)?;
            keys::keys(&mut conn).await?
        };
        let (mut opened, mut refused) = (Vec::new(), Vec::new());
        for k in stored {
            match self.opened(&k) {
                Ok(key) => opened.push(key),
                Err(_) => refused.push(k.key),
            }
        }
        let now = u64::try_from(store::now_ms()).unwrap_or(0);
        let view = |k: &SigningKey, role: &str| IssuerKeyView {
            kid: k.kid.clone(),
            created_at: k.created_at,
            signs_from: k.signs_from,
            role: role.to_owned(),
        };
        let mut views: Vec<IssuerKeyView> = opened
            .iter()
            .zip(oidc::roles(&opened, now))
            .map(|(k, r)| view(k, r.as_str()))
            .chain(refused.iter().map(|k| view(k, "refused")))
            .collect();
        views.sort_by_key(|v| (v.signs_from, v.created_at));
        let active = issuer.active();
        Ok(IssuerKeys {
            keys: views,
            signer_here: active.as_ref().map(|a| a.kid.clone()),
            refreshed_at: active.map(|a| a.refreshed_ms),
        })
    }

    /// Runs `decide` (core's schedule) on the stored keys now, under the schedule's lock:
    /// makes the key it asks for, deletes those it drops, then loads the signer and the JWKS.
    /// Returns the key made, if any, and those dropped.
    async fn apply_schedule(
        &self,
        decide: fn(&[SigningKey], u64) -> oidc::Plan,
    ) -> Result<(Option<String>, Vec<String>)> {
        let Some(issuer) = self.issuer.clone() else {
            return Ok((None, Vec::new()));
        };
        let now = u64::try_from(store::now_ms()).unwrap_or(0);
        let mut w = self.store.write().await?;
        // An operator's replacement, as every change asked for: a token revoked while it waited
        // (or on another replica, still in this one's memory) replaces nothing. The periodic
        // refresh has no actor.
        Self::actor_still_in_force(&mut w).await?;
        keys::lock_schedule(&mut w.tx).await?;
        let mut stored = self.opened_keys(keys::keys(&mut w.tx).await?)?;
        let plan = decide(
            &stored.iter().map(|k| k.key.clone()).collect::<Vec<_>>(),
            now,
        );
        let mut created = None;
        if plan.create {
            let signs_from = plan.new_signs_from;
            let (key, pkcs8) = tokio::task::spawn_blocking(move || generate(now, signs_from))
                .await
                .map_err(|_| corrupt("RSA generation stopped"))??;
            let wrapped = encrypt(&self.managed, &context(&key.kid)?, &pkcs8, &mut rand::rng())?;
            let k = keys::StoredIssuerKey { key, wrapped };
            keys::put(&mut w.tx, &k).await?;
            tracing::info!(kid = %k.key.kid, signs_from = k.key.signs_from, "issuer key made");
            created = Some(k.key.kid.clone());
            stored.push(k);
        }
        keys::drop_keys(&mut w.tx, &plan.drop).await?;
        w.commit().await?;
        stored.retain(|k| !plan.drop.contains(&k.key.kid));
        let dropped = plan.drop;
        // What the keys left say now, whatever decided: the signer and what is published.
        let plan = oidc::plan(
            &stored.iter().map(|k| k.key.clone()).collect::<Vec<_>>(),
            now,
        );
        let signer = plan
            .signer
            .as_ref()
            .and_then(|kid| stored.iter().find(|k| &k.key.kid == kid))
            .ok_or_else(|| corrupt("no signing key after the schedule ran"))?;
        let pkcs8 = Zeroizing::new(decrypt(
            &self.managed,
            &context(&signer.key.kid)?,
            &signer.wrapped,
        )?);
        let active = Active {
            kid: signer.key.kid.clone(),
            key: encoding_key(&pkcs8)?,
            jwks: oidc::jwks(
                stored
                    .iter()
                    .filter(|k| plan.publish.contains(&k.key.kid))
                    .map(|k| &k.key),
            ),
            refreshed_ms: now,
        };
        *issuer.active.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(active));
        Ok((created, dropped))
    }

    /// The stored keys byok itself sealed, each with its public half taken from its private
    /// key, never from the row's clear columns. Anyone who can write the database could fill
    /// those with a key of their own; published, it would let them sign byok's tokens for any
    /// org, which its cloud trusts, and so reach the org's KMS. A row whose key does not open
    /// under the managed key with its id bound, or opens to another key than its id names, is
    /// left out (never published, signing or planned with, so it cannot hold rotation back
    /// either) and logged. If rows exist and none opens, the managed key is not the one that
    /// sealed them: an error, rather than a new key the rest of the deployment cannot open.
    fn opened_keys(
        &self,
        stored: Vec<keys::StoredIssuerKey>,
    ) -> Result<Vec<keys::StoredIssuerKey>> {
        let mut opened = Vec::with_capacity(stored.len());
        let mut refused = None;
        for k in stored {
            match self.opened(&k) {
                Ok(key) => opened.push(keys::StoredIssuerKey {
                    key,
                    wrapped: k.wrapped,
                }),
                Err(e) => {
                    tracing::error!(kid = %k.key.kid, error = ?e, "an issuer key byok cannot open is ignored: not published, never signs");
                    refused.get_or_insert(e);
                }
            }
        }
        match refused {
            Some(e) if opened.is_empty() => Err(e),
            _ => Ok(opened),
        }
    }

    /// Stored key `k`'s public half, from its private key opened under the managed key.
    fn opened(&self, k: &keys::StoredIssuerKey) -> Result<SigningKey> {
        let pkcs8 = Zeroizing::new(decrypt(&self.managed, &context(&k.key.kid)?, &k.wrapped)?);
        let pair = KeyPair::from_pkcs8(&pkcs8).map_err(|_| corrupt("not an RSA PKCS#8 key"))?;
        let (kid, n, e) = public_half(&pair);
        if kid != k.key.kid {
            return Err(corrupt("the sealed key is not the one its id names"));
        }
        Ok(SigningKey {
            kid,
            created_at: k.key.created_at,
            signs_from: k.key.signs_from,
            n,
            e,
        })
    }

    /// The issuer URL's path (`""` at the root), or `None` without `--public-url`: the
    /// documents are served under it.
    pub fn issuer_path(&self) -> Option<String> {
        self.issuer.as_ref().map(|i| i.url().path().to_owned())
    }

    /// The discovery document, or `None` without `--public-url`.
    pub fn issuer_discovery(&self) -> Option<Value> {
        self.issuer.as_ref().map(|i| oidc::discovery(i.url()))
    }

    /// The published keys, or `None` without `--public-url` (or before the first refresh).
    pub fn issuer_jwks(&self) -> Option<Value> {
        self.issuer
            .as_ref()
            .and_then(|i| i.active())
            .map(|a| a.jwks.clone())
    }

    /// [`Self::issuer_jwks`] as the clouds are served it: [`ServiceError::IssuerBehind`] once
    /// this replica has not run the schedule for five minutes (`PUBLISHES_WITHOUT_REFRESH_MS`).
    pub fn issuer_jwks_to_publish(&self) -> Result<Option<Value>> {
        let Some(active) = self.issuer.as_ref().and_then(|i| i.active()) else {
            return Ok(None);
        };
        if publishes_nothing(&active) {
            return Err(ServiceError::IssuerBehind);
        }
        Ok(Some(active.jwks.clone()))
    }

    /// Whether this replica publishes no JWKS now ([`Self::issuer_jwks_to_publish`]): not
    /// ready, so that a load balancer sends the clouds to a replica that does.
    pub fn issuer_behind(&self) -> bool {
        self.issuer
            .as_ref()
            .and_then(|i| i.active())
            .is_some_and(|a| publishes_nothing(&a))
    }

    /// A token for org `org` and `audience`, valid [`oidc::TOKEN_TTL_MS`].
    pub fn mint_token(&self, org: &str, audience: &str) -> Result<Zeroizing<String>> {
        let issuer = self.issuer.as_ref().ok_or_else(|| {
            ServiceError::NotConfigured(String::from(
                "byok has no OIDC issuer: the operator must set --public-url (BYOK_PUBLIC_URL)",
            ))
        })?;
        issuer.mint(org, audience).map_err(|e| corrupt(&e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use byok_core::SecretBytes;
    use byok_core::kms::oidc::{
        AWS_STS_AUDIENCE, IssuerUrl, PUBLISH_AHEAD_MS, REFRESH_MS, SIGNS_FOR_MS, SKEW_MS,
        TOKEN_TTL_MS,
    };
    use byok_core::scope::managed_key;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
    use serde_json::Value;

    use super::super::kms::KmsSettings;
    use super::super::{Service, ServiceError};
    use crate::store::Database;

    const ISSUER: &str = "https://byok.test";

    fn service(db: &Database, managed: u8) -> Service {
        super::super::test_service(db, managed).with_issuer(IssuerUrl::parse(ISSUER).unwrap())
    }

    /// Checks `token` as a cloud would, with the JWKS `jwks` and audience `aud`: the claims.
    fn check(jwks: &Value, token: &str, aud: &str) -> jsonwebtoken::errors::Result<Value> {
        let kid = decode_header(token)?.kid.expect("tokens carry kid");
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
        check_with(jwk, token, aud)
    }

    /// Checks `token` with the one key `jwk`, whatever kid the token names.
    fn check_with(jwk: &Value, token: &str, aud: &str) -> jsonwebtoken::errors::Result<Value> {
        let key = DecodingKey::from_rsa_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
        )?;
        let mut v = Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[aud]);
        v.set_required_spec_claims(&["iss", "sub", "aud", "exp", "iat"]);
        decode::<Value>(token, &key, &v).map(|t| t.claims)
    }

    fn kids(jwks: &Value) -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    fn kid_of(token: &str) -> String {
        decode_header(token).unwrap().kid.unwrap()
    }

    #[tokio::test]
    async fn tokens_verify_with_the_published_key_for_their_org_and_audience_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let s = service(&db, 7);
        assert!(
            s.issuer_jwks().is_none(),
            "nothing before the first refresh"
        );
        s.refresh_issuer().await.unwrap();
        let jwks = s.issuer_jwks().unwrap();
        assert_eq!(kids(&jwks).len(), 1);
        assert_eq!(
            s.issuer_discovery().unwrap()["jwks_uri"],
            "https://byok.test/.well-known/jwks.json"
        );
        let token = s.mint_token("o1", AWS_STS_AUDIENCE).unwrap();
        let claims = check(&jwks, &token, AWS_STS_AUDIENCE).unwrap();
        assert_eq!(claims["sub"], "org:o1");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            TOKEN_TTL_MS / 1000
        );
        // Another audience (another cloud) refuses it; so does another issuer's JWKS.
        let wrong = check(&jwks, &token, "api://AzureADTokenExchange").unwrap_err();
        assert_eq!(
            wrong.kind(),
            &jsonwebtoken::errors::ErrorKind::InvalidAudience
        );
        let other_dir = tempfile::tempdir().unwrap();
        let other = service(&Database::open_dir(other_dir.path()).await.unwrap(), 7);
        other.refresh_issuer().await.unwrap();
        let other_jwks = other.issuer_jwks().unwrap();
        assert_eq!(
            check(&other_jwks, &token, AWS_STS_AUDIENCE)
                .unwrap_err()
                .kind(),
            &jsonwebtoken::errors::ErrorKind::InvalidKeyFormat,
            "another issuer publishes no key of this kid"
        );
        // Nor does its key verify the token, whatever the kid says.
        assert_eq!(
            check_with(&other_jwks["keys"][0], &token, AWS_STS_AUDIENCE)
                .unwrap_err()
                .kind(),
            &jsonwebtoken::errors::ErrorKind::InvalidSignature
        );
        // A token edited after signing (another org's subject) fails its signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        use base64ct::{Base64UrlUnpadded, Encoding};
        let body = String::from_utf8(Base64UrlUnpadded::decode_vec(&parts[1]).unwrap()).unwrap();
        parts[1] = Base64UrlUnpadded::encode_string(body.replace("org:o1", "org:o2").as_bytes());
        let forged = parts.join(".");
        assert_eq!(
            check(&jwks, &forged, AWS_STS_AUDIENCE).unwrap_err().kind(),
            &jsonwebtoken::errors::ErrorKind::InvalidSignature
        );
    }

    #[tokio::test]
    async fn the_private_key_is_stored_sealed_under_the_managed_key_and_kept_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let s = service(&db, 7);
        s.refresh_issuer().await.unwrap();
        let kid = kids(&s.issuer_jwks().unwrap()).remove(0);
        let (wrapped,): (Vec<u8>,) = sqlx::query_as("SELECT wrapped FROM issuer_key")
            .fetch_one(db.pool())
            .await
            .unwrap();
        // Opened only with the managed key and the key's own context.
        let pkcs8 =
            byok_core::envelope::decrypt(&s.managed, &super::context(&kid).unwrap(), &wrapped)
                .unwrap();
        assert!(super::encoding_key(&pkcs8).is_ok());
        assert!(
            !wrapped
                .windows(64)
                .any(|w| pkcs8.windows(64).any(|p| p == w)),
            "no run of the private key in clear"
        );
        let other = managed_key(SecretBytes::from_bytes(&mut [8; 32]), 1);
        assert_eq!(
            byok_core::envelope::decrypt(&other, &super::context(&kid).unwrap(), &wrapped),
            Err(byok_core::Error::Decrypt)
        );
        assert_eq!(
            byok_core::envelope::decrypt(&s.managed, &super::context("another").unwrap(), &wrapped),
            Err(byok_core::Error::Decrypt)
        );
        // A second start keeps the key: the JWKS the clouds cached stays right.
        let again = service(&db, 7);
        again.refresh_issuer().await.unwrap();
        assert_eq!(kids(&again.issuer_jwks().unwrap()), vec![kid.clone()]);
        assert_eq!(
            kid_of(&again.mint_token("o1", AWS_STS_AUDIENCE).unwrap()),
            kid
        );
        // With another managed key the start fails instead of signing with something else.
        let e = service(&db, 8).refresh_issuer().await.unwrap_err();
        assert!(
            matches!(e, ServiceError::Crypto(byok_core::Error::Decrypt)),
            "{e:?}"
        );
    }

    /// A key that may have leaked is replaced at once: the new key alone is published and
    /// signs, a token of the old key no longer verifies with what is published, and another
    /// replica on the same database switches at its next read of the schedule. Without an
    /// issuer there is nothing to replace.
    #[tokio::test]
    async fn replaced_keys_stop_being_published_and_signing_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let (s, other) = (service(&db, 7), service(&db, 7));
        s.refresh_issuer().await.unwrap();
        other.refresh_issuer().await.unwrap();
        let old = kids(&s.issuer_jwks().unwrap()).remove(0);
        let leaked = s.mint_token("o1", AWS_STS_AUDIENCE).unwrap();
        let replaced = s.replace_issuer_keys().await.unwrap();
        assert_eq!(replaced.dropped, vec![old.clone()]);
        assert_ne!(replaced.kid, old);
        let jwks = s.issuer_jwks().unwrap();
        assert_eq!(kids(&jwks), vec![replaced.kid.clone()]);
        let token = s.mint_token("o1", AWS_STS_AUDIENCE).unwrap();
        assert_eq!(kid_of(&token), replaced.kid);
        assert!(check(&jwks, &token, AWS_STS_AUDIENCE).is_ok());
        assert_eq!(
            check(&jwks, &leaked, AWS_STS_AUDIENCE).unwrap_err().kind(),
            &jsonwebtoken::errors::ErrorKind::InvalidKeyFormat,
            "the old key is no longer published"
        );
        // The other replica still holds the old key until it reads the schedule again.
        assert_eq!(
            kid_of(&other.mint_token("o1", AWS_STS_AUDIENCE).unwrap()),
            old
        );
        other.refresh_issuer().await.unwrap();
        assert_eq!(
            kids(&other.issuer_jwks().unwrap()),
            vec![replaced.kid.clone()]
        );
        assert_eq!(
            kid_of(&other.mint_token("o1", AWS_STS_AUDIENCE).unwrap()),
            replaced.kid
        );
        let none = super::super::test_service(&db, 7);
        assert!(matches!(
            none.replace_issuer_keys().await,
            Err(ServiceError::NotConfigured(_))
        ));
    }

    /// An operator token revoked before its replacement reached the writer (here, or on another
    /// replica whose revoke this one's memory has not seen) replaces no key: the replacement
    /// checks the token in storage, in its own transaction, as every change does.
    #[tokio::test]
    async fn a_revoked_operator_token_replaces_no_issuer_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let s = service(&db, 7);
        s.refresh_issuer().await.unwrap();
        let before = kids(&s.issuer_jwks().unwrap());
        let operator = s.bootstrap_operator().await.unwrap().expect("an operator");
        let op = s.authenticate(&operator).await.unwrap().unwrap();
        s.revoke_token(None, op.grant.id).await.unwrap();
        let replaced = crate::store::audit::with_actor_slot(async {
            crate::store::audit::set_actor(op.grant.clone());
            s.replace_issuer_keys().await
        })
        .await;
        assert!(
            matches!(replaced, Err(ServiceError::Unauthenticated(_))),
            "{:?}",
            replaced.map(drop)
        );
        s.refresh_issuer().await.unwrap();
        assert_eq!(
            kids(&s.issuer_jwks().unwrap()),
            before,
            "a key was replaced"
        );
    }

    /// Two replicas starting at once on an empty PostgreSQL database make one key between them,
    /// and both sign with it and publish it: a cloud may fetch either replica's JWKS.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_starting_together_make_one_key_between_them() {
        let Some(url) = crate::store::test_postgres_url().await else {
            return;
        };
        let (a, b) = (
            Database::open(&url).await.unwrap(),
            Database::open(&url).await.unwrap(),
        );
        let (sa, sb) = (service(&a, 7), service(&b, 7));
        let (ra, rb) = tokio::join!(sa.refresh_issuer(), sb.refresh_issuer());
        ra.unwrap();
        rb.unwrap();
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM issuer_key")
            .fetch_one(a.pool())
            .await
            .unwrap();
        assert_eq!(rows, 1, "each replica made a key of its own");
        let token = sb.mint_token("o1", AWS_STS_AUDIENCE).unwrap();
        assert!(check(&sa.issuer_jwks().unwrap(), &token, AWS_STS_AUDIENCE).is_ok());
        assert_eq!(sa.issuer_jwks(), sb.issuer_jwks());
    }

    /// Moves every stored key's times back by `ms`, as if that much time had passed.
    async fn age(db: &Database, ms: u64, only: Option<&str>) {
        sqlx::query(
            "UPDATE issuer_key SET created_at = created_at - $1, signs_from = signs_from - $1
             WHERE $2 IS NULL OR kid = $2",
        )
        .bind(i64::try_from(ms).unwrap())
        .bind(only)
        .execute(db.pool())
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_successor_is_published_a_day_before_it_signs_and_the_old_key_outlives_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let s = service(&db, 7);
        s.refresh_issuer().await.unwrap();
        let first = kids(&s.issuer_jwks().unwrap()).remove(0);
        // 29 days later: the successor is made and published, the first key still signs.
        age(&db, SIGNS_FOR_MS - PUBLISH_AHEAD_MS, None).await;
        s.refresh_issuer().await.unwrap();
        let published = kids(&s.issuer_jwks().unwrap());
        assert_eq!(published.len(), 2, "{published:?}");
        assert_eq!(published[0], first);
        let second = published[1].clone();
        let old_token = s.mint_token("o1", AWS_STS_AUDIENCE).unwrap();
        assert_eq!(kid_of(&old_token), first);
        // A day later the successor signs; the first stays published for the old tokens.
        age(&db, PUBLISH_AHEAD_MS, None).await;
        s.refresh_issuer().await.unwrap();
        assert_eq!(
            kid_of(&s.mint_token("o1", AWS_STS_AUDIENCE).unwrap()),
            second
        );
        let jwks = s.issuer_jwks().unwrap();
        assert_eq!(kids(&jwks), vec![first.clone(), second.clone()]);
        assert!(check(&jwks, &old_token, AWS_STS_AUDIENCE).is_ok());
        // Once no token of the first key can be alive (a replica that has not run the
        // schedule since may have signed with it for up to REFRESH_MS more), it is deleted.
        age(&db, REFRESH_MS + TOKEN_TTL_MS + 2 * SKEW_MS, Some(&second)).await;
        s.refresh_issuer().await.unwrap();
        assert_eq!(kids(&s.issuer_jwks().unwrap()), vec![second]);
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM issuer_key")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }

    /// Rows written into the database by anyone but byok publish nothing. A key byok cannot
    /// open (an attacker's, due to sign ten years on) is left out of the JWKS and of the
    /// schedule, which still makes the successor on time; a row whose clear public half was
    /// replaced by the attacker's still publishes the key byok sealed.
    #[tokio::test]
    async fn only_keys_byok_sealed_are_published() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let s = service(&db, 7);
        s.refresh_issuer().await.unwrap();
        let before = s.issuer_jwks().unwrap();
        let genuine = kids(&before).remove(0);
        let now = u64::try_from(crate::store::now_ms()).unwrap();
        let (forged, _) = super::generate(now, now + 10 * 365 * 86_400_000).unwrap();
        let mut w = db.write().await.unwrap();
        let row = crate::store::issuer::StoredIssuerKey {
            key: forged.clone(),
            wrapped: vec![0; 64],
        };
        crate::store::issuer::put(&mut w.tx, &row).await.unwrap();
        w.commit().await.unwrap();
        sqlx::query("UPDATE issuer_key SET n = $1 WHERE kid = $2")
            .bind(&forged.n)
            .bind(&genuine)
            .execute(db.pool())
            .await
            .unwrap();
        s.refresh_issuer().await.unwrap();
        assert_eq!(s.issuer_jwks().unwrap(), before);
        let token = s.mint_token("o1", AWS_STS_AUDIENCE).unwrap();
        assert!(check(&before, &token, AWS_STS_AUDIENCE).is_ok());
        // 29 days on, the successor is made: the forged row held nothing back.
        age(&db, SIGNS_FOR_MS - PUBLISH_AHEAD_MS, Some(&genuine)).await;
        s.refresh_issuer().await.unwrap();
        let published = kids(&s.issuer_jwks().unwrap());
        assert_eq!(published.len(), 2, "{published:?}");
        assert!(!published.contains(&forged.kid), "{published:?}");
    }

    /// A replica whose refreshes keep failing stops publishing the JWKS after five minutes
    /// (a key may have been replaced since), stops signing once its key may have been deleted
    /// and unpublished by the others, and does both again after a refresh.
    #[tokio::test]
    async fn a_replica_not_refreshed_for_too_long_publishes_then_signs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let s = service(&db, 7);
        s.refresh_issuer().await.unwrap();
        let issuer = s.issuer.clone().unwrap();
        let back_by = |ms: u64| {
            let mut held = issuer.active.write().unwrap();
            let a = held.take().unwrap();
            let a = Arc::into_inner(a).unwrap();
            *held = Some(Arc::new(super::Active {
                refreshed_ms: a.refreshed_ms - ms,
                ..a
            }));
        };
        back_by(super::PUBLISHES_WITHOUT_REFRESH_MS - 60_000);
        assert_eq!(s.issuer_jwks_to_publish().unwrap(), s.issuer_jwks());
        assert!(!s.issuer_behind());
        back_by(120_000);
        assert!(matches!(
            s.issuer_jwks_to_publish(),
            Err(ServiceError::IssuerBehind)
        ));
        assert!(s.issuer_behind(), "ready while publishing nothing");
        assert!(s.mint_token("o1", AWS_STS_AUDIENCE).is_ok());
        back_by(super::SIGNS_WITHOUT_REFRESH_MS - super::PUBLISHES_WITHOUT_REFRESH_MS - 120_000);
        assert!(s.mint_token("o1", AWS_STS_AUDIENCE).is_ok());
        back_by(120_000);
        let e = s.mint_token("o1", AWS_STS_AUDIENCE).unwrap_err();
        assert!(
            format!("{e:?}").contains("signs nothing until a refresh succeeds"),
            "{e:?}"
        );
        s.refresh_issuer().await.unwrap();
        assert!(s.mint_token("o1", AWS_STS_AUDIENCE).is_ok());
        assert!(s.issuer_jwks_to_publish().unwrap().is_some());
        assert!(!s.issuer_behind());
    }

    #[tokio::test]
    async fn without_a_public_url_there_is_no_issuer_and_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let key = managed_key(SecretBytes::from_bytes(&mut [7; 32]), 1);
        let s = Service::new(db, key, Duration::from_secs(60), KmsSettings::default()).unwrap();
        s.refresh_issuer().await.unwrap();
        assert!(s.issuer_discovery().is_none() && s.issuer_jwks().is_none());
        let e = s.mint_token("o1", AWS_STS_AUDIENCE).unwrap_err();
        assert!(format!("{e:?}").contains("--public-url"), "{e:?}");
    }
}
