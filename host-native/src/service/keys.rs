//! Customer master keys: attach (after live validation), list, the policies to grant, set the
//! default, disable with a re-encryption target, enable again, and fall back to the managed
//! key. Only org root keys touch a KMS: O(1) calls per org, whatever the amount of data. The
//! root rewrap jobs these start are in `jobs.rs`; what KMS answers say about a key's health is
//! in `health.rs`.

use std::collections::BTreeMap;

use byok_core::kms::provider::{self, Access, RoleTrust, Wire, new_external_id};
use byok_core::kms::validate::Validation;
use byok_core::scope::{HolderId, HolderStatus, Org, RootProof};
use byok_core::{KeyId, ScopeId, ScopeKey};
use serde::Serialize;
use serde_json::Value;

use super::kms::KeyAccess;
use super::{OrgCell, Result, Service, ServiceError};
use crate::store::keys::{self, CmkRow};
use crate::store::{self, holder_name, parse_holder};

/// One step of a validation report: core's type, so every host reports the same JSON.
pub use byok_core::validate::StepReport as StepView;

fn report(v: &Validation) -> Vec<StepView> {
    byok_core::validate::report(v.report())
}

/// A key as the API lists it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// `managed` or `cmk:N`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `managed`, or the key's provider (`aws`, `gcp`).
    pub r#type: String,
    /// The key as its KMS described it when it was attached (AWS key ARN, GCP CryptoKey name).
    pub key: Option<String>,
    /// The identifier pasted when it was attached, if it differs (an AWS alias ARN; display
    /// only: byok uses the key, so re-pointing the alias changes nothing).
    pub key_pasted: Option<String>,
    /// The customer's principal byok becomes, if any (AWS role ARN, GCP service account).
    pub role: Option<String>,
    /// With a role: how byok assumes it (`oidc` or `external_id`).
    pub role_trust: Option<String>,
    /// Where byok's token is exchanged (GCP workload identity pool provider), if anywhere.
    pub audience: Option<String>,
    /// Whether it wraps the root key by default.
    pub default: bool,
    /// `pending` (its wrap is running), `ready` or `disabled`.
    pub state: String,
    /// Last health check: `ok`, or the error class (`key_disabled`, `access_denied`, ...).
    pub health: Option<String>,
    /// The health check's detail.
    pub health_detail: Option<String>,
    /// When it was checked (ms since the epoch).
    pub health_at: Option<i64>,
    /// Set while the org serves cached keys past their TTL because this key's KMS is
    /// unreachable (the org's outage grace): since when, and until when at most.
    pub outage_grace: Option<super::GraceView>,
}

/// An org's keys, and whether the vendor can open its data without the customer's KMS.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KeysView {
    /// `true` while the managed key holds a copy of the root (managed mode, or a customer key
    /// attached but not yet the default); `false` under BYOK: then byok cannot decrypt anything
    /// of this org without a call to the customer's KMS.
    pub vendor_can_decrypt: bool,
    /// The managed key and every attached customer key.
    pub keys: Vec<KeyView>,
}

/// The policies to grant for a key.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyView {
    /// The key's provider.
    pub provider: String,
    /// The principal the key's policy grants (byok's, or the customer's principal byok
    /// becomes).
    pub principal: String,
    /// What to add to the key's policy: AWS key policy statements, GCP IAM bindings.
    #[schema(value_type = Object)]
    pub key_policy_statements: Value,
    /// With a role: its permissions policy.
    #[schema(value_type = Object)]
    pub role_policy: Option<Value>,
    /// With a role: its trust policy: byok's OIDC issuer for this org's subject (`oidc`), or
    /// byok's principal with this org's external id (`external_id`).
    #[schema(value_type = Object)]
    pub trust_policy: Option<Value>,
    /// The org's external id.
    pub external_id: String,
    /// With a role: how byok assumes it, as asked or by default (`oidc` when byok is an OIDC
    /// issuer, else `external_id`).
    pub role_trust: Option<String>,
    /// byok's OIDC issuer without the scheme (the IAM OIDC provider's URL), if it is one.
    pub issuer: Option<String>,
    /// The commands that apply the grant, for the admin to paste.
    pub commands: Vec<String>,
}

/// What the setup page needs from the server to compute any provider's grant in the browser,
/// with core's own function: the vendor's principals, byok's issuer, the org's subject and
/// external id.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GrantFacts {
    /// byok's OIDC issuer URL (`--public-url`), if it is one.
    pub issuer_url: Option<String>,
    /// The subject of this org's OIDC tokens (what a trust condition names).
    pub subject: String,
    /// The org's external id (AWS `AssumeRole`).
    pub external_id: String,
    /// The vendor's own principal per provider, where the operator configured one (`aws`: the
    /// principal ARN; `gcp`: the service account email).
    pub vendor_principals: BTreeMap<String, String>,
    /// The providers byok speaks.
    pub providers: Vec<String>,
}

/// A key as the admin describes it: its provider and identifier, and how byok reaches it.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec<'a> {
    /// `aws`, `gcp`.
    pub provider: &'a str,
    /// The identifier as pasted.
    pub key: &'a str,
    /// The customer's principal byok becomes (AWS role ARN, GCP service account), if any.
    pub role: Option<&'a str>,
    /// How byok becomes it, if asked.
    pub trust: Option<RoleTrust>,
    /// Where byok's token is exchanged (GCP workload identity pool provider), if anywhere.
    pub audience: Option<&'a str>,
}

impl Service {
    /// How byok reaches attached key `n` of `org`.
    pub(super) async fn access(&self, cell: &OrgCell, org: ScopeId, n: u32) -> Result<KeyAccess> {
        let row = cell
            .cmks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&n)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("key cmk:{n} not found")))?;
        let corrupt = |why: String| ServiceError::Store(store::StoreError::Corrupt(why));
        let p = provider::wire(&row.provider)
            .ok_or_else(|| corrupt(provider::unknown(&row.provider)))?;
        Ok(KeyAccess {
            provider: p,
            access: Access {
                org: org.to_string(),
                key: p
                    .parse_key(&row.key)
                    .map_err(|e| corrupt(e.to_string()))?
                    .key,
                role: row.role,
                trust: row.role_trust,
                external_id: self.external_id(org).await?,
                audience: row.audience,
                danger_base: self.kms.danger_base(p),
            },
        })
    }

    /// How byok reaches the key `spec` describes, for org `org`: every part checked by its
    /// provider. Returns the parsed key too.
    async fn spec_access(
        &self,
        org: ScopeId,
        spec: &KeySpec<'_>,
    ) -> Result<(KeyAccess, provider::ParsedKey)> {
        let invalid = |e: provider::BadIdentifier| ServiceError::Invalid(e.to_string());
        let p: &'static dyn Wire = provider::wire(spec.provider)
            .ok_or_else(|| ServiceError::Invalid(provider::unknown(spec.provider)))?;
        let parsed = p.parse_key(spec.key).map_err(invalid)?;
        let role = spec
            .role
            .map(|r| p.parse_role(r))
            .transpose()
            .map_err(invalid)?;
        let audience = spec
            .audience
            .map(|a| p.parse_audience(a))
            .transpose()
            .map_err(invalid)?;
        let trust = self.role_trust(spec.trust)?;
        Ok((
            KeyAccess {
                provider: p,
                access: Access {
                    org: org.to_string(),
                    key: parsed.key.clone(),
                    role,
                    trust,
                    external_id: self.external_id(org).await?,
                    audience,
                    danger_base: self.kms.danger_base(p),
                },
            },
            parsed,
        ))
    }

    /// How byok will assume `role`: as `asked`, or by default with its own OIDC token when it
    /// is an issuer (no vendor secret involved), else presenting the org's external id.
    fn role_trust(&self, asked: Option<RoleTrust>) -> Result<RoleTrust> {
        match asked {
            Some(RoleTrust::Oidc) if !self.kms.is_issuer() => {
                Err(ServiceError::NotConfigured(
                    "role_trust `oidc` needs byok to be an OIDC issuer: the operator sets --public-url (BYOK_PUBLIC_URL)".into(),
                ))
            }
            Some(t) => Ok(t),
            None if self.kms.is_issuer() => Ok(RoleTrust::Oidc),
            None => Ok(RoleTrust::ExternalId),
        }
    }

    /// The org's external id, made on first use.
    pub async fn external_id(&self, org: ScopeId) -> Result<String> {
        if let Some(id) = keys::external_id(self.store.pool(), org).await? {
            return Ok(id);
        }
        let fresh = new_external_id(&mut rand::rng());
        let mut w = self.store.write_org(org).await?;
        keys::set_external_id(&mut w.tx, org, &fresh).await?;
        w.commit().await?;
        // Another request may have set it first: read back what was stored.
        keys::external_id(self.store.pool(), org)
            .await?
            .ok_or_else(|| ServiceError::Store(store::StoreError::Corrupt("external id".into())))
    }

    /// Unwraps `holder`'s copy of every live root version at this moment: through the KMS for a
    /// customer key (never from the cache), locally for the managed key.
    async fn fresh_roots(
        &self,
        cell: &OrgCell,
        org: &Org,
        holder: HolderId,
    ) -> Result<Vec<ScopeKey>> {
        let mut out = Vec::new();
        for v in org.root_versions() {
            out.push(
                self.unwrap_root_with(cell, org, holder, KeyId::new(org.id(), v))
                    .await?
                    .0,
            );
        }
        Ok(out)
    }

    /// Wraps every live root version under customer key `n` (one KMS call each), with the roots
    /// from the cache or the default holder: the copies a new or re-enabled key needs.
    async fn wrap_roots(&self, cell: &OrgCell, org: &Org, n: u32) -> Result<Vec<(u32, Vec<u8>)>> {
        let access = self.access(cell, org.id(), n).await?;
        let mut copies = Vec::new();
        for v in org.root_versions() {
            let root = self.scope_key(cell, KeyId::new(org.id(), v)).await?;
            let secret = root.duplicate_secret();
            let sent = self.cache.evictions(org.id());
            let call = self.kms_call(org.id(), n, &access, "Encrypt");
            let answer = self.kms.wrap_counted(&access, &secret, v, &call.sent).await;
            self.kms_answered(cell, call, answer.result.as_ref().err(), sent)
                .await?;
            copies.push((v, answer.result?));
        }
        Ok(copies)
    }

    /// The facts a browser needs to compute grants for `org` (see [`GrantFacts`]).
    pub async fn grant_facts(&self, org: ScopeId) -> Result<GrantFacts> {
        self.org(org).await?;
        let external_id = self.external_id(org).await?;
        let mut vendor_principals = BTreeMap::new();
        for p in provider::PROVIDERS {
            let access = Access {
                org: org.to_string(),
                key: String::new(),
                role: None,
                trust: RoleTrust::ExternalId,
                external_id: external_id.clone(),
                audience: None,
                danger_base: None,
            };
            if let Ok(principal) = self.kms.principal_of(*p, &access) {
                vendor_principals.insert(p.name().to_owned(), principal);
            }
        }
        Ok(GrantFacts {
            issuer_url: self.issuer.as_ref().map(|i| i.url().as_str().to_owned()),
            subject: byok_core::kms::oidc::subject(&org.to_string()),
            external_id,
            vendor_principals,
            providers: provider::names().into_iter().map(str::to_owned).collect(),
        })
    }

    /// The policies to grant for the key `spec` describes.
    pub async fn policy(&self, org: ScopeId, spec: &KeySpec<'_>) -> Result<PolicyView> {
        self.org(org).await?;
        let (access, _) = self.spec_access(org, spec).await?;
        let issuer = self.issuer.as_ref().map(|i| i.url().as_str().to_owned());
        // The setup page computes the same grant in the browser (host-wasm's `keyGrant`).
        let grant = self
            .kms
            .grant(&access, issuer.as_deref())
            .map_err(ServiceError::NotConfigured)?;
        Ok(PolicyView {
            provider: access.provider.name().into(),
            key_policy_statements: grant.key_policy,
            role_policy: grant.role_policy,
            trust_policy: grant.trust_policy,
            principal: grant.principal,
            role_trust: access
                .access
                .role
                .as_ref()
                .map(|_| access.access.trust.as_str().to_owned()),
            external_id: access.access.external_id,
            issuer: self.issuer.as_ref().map(|i| i.url().host_path().to_owned()),
            commands: grant.commands,
        })
    }

    /// Runs the validation plan for a key as this org would use it.
    pub async fn validate(
        &self,
        org: ScopeId,
        spec: &KeySpec<'_>,
    ) -> Result<(bool, Vec<StepView>)> {
        let (ok, steps, _, _) = self.validate_resolved(org, spec, None).await?;
        Ok((ok, steps))
    }

    /// [`Self::validate`], also returning the key to store (the key as its KMS described it,
    /// if it fits what was pasted) and the first denial its KMS answered, if any. The calls it
    /// made are one row of the org's log (`key_validation`), naming `attached` (`cmk:N`) when
    /// the key is one of the org's, else the identifier given: a customer comparing the log
    /// with their KMS's own finds the probes there too. For an attached key, a denial evicts
    /// the org's cached keys before that write, as any call's does ([`Self::kms_answered`]).
    async fn validate_resolved(
        &self,
        org: ScopeId,
        spec: &KeySpec<'_>,
        attached: Option<u32>,
    ) -> Result<(
        bool,
        Vec<StepView>,
        Option<(KeyAccess, provider::ParsedKey, String)>,
        Option<super::kms::Withdrew>,
    )> {
        self.org(org).await?;
        // An identifier that does not parse is a failed first step, reported with its fix,
        // like every other step (nothing else is checked then).
        if let Some(p) = provider::provider(spec.provider)
            && p.parse_key(spec.key).is_err()
        {
            let v = Validation::start(
                p,
                spec.key,
                &[],
                "",
                &org.to_string(),
                false,
                &mut rand::rng(),
            );
            return Ok((false, report(&v), None, None));
        }
        let (access, parsed) = self.spec_access(org, spec).await?;
        let principal = self
            .kms
            .principal(&access)
            .map_err(ServiceError::NotConfigured)?;
        let key = attached.map_or_else(|| spec.key.to_owned(), |n| format!("cmk:{n}"));
        let mut pending = self.key_validation(org, key, access.provider.name());
        let (v, denial) = self
            .kms
            .validate_logged(&access, spec.key, &principal, &pending.log)
            .await;
        if attached.is_some() && denial.is_some() {
            self.cache.evict_org(org);
        }
        pending.ended(v.ok());
        if let Some(event) = pending.row() {
            self.audit_event(org, &event).await?;
        }
        pending.written();
        let resolved = v.described_key().map(str::to_owned);
        Ok((
            v.ok(),
            report(&v),
            resolved.map(|r| (access, parsed, r)),
            denial,
        ))
    }

    /// Runs the validation plan again for attached key `key` (`cmk:N`) and records the result
    /// as its health.
    pub async fn revalidate(&self, org: ScopeId, key: &str) -> Result<(bool, Vec<StepView>)> {
        let HolderId::Cmk(n) = Self::holder(key)? else {
            return Err(ServiceError::Invalid(
                "the managed key needs no validation".into(),
            ));
        };
        let cell = self.current_org(org).await?;
        let row = cell
            .cmks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&n)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("key cmk:{n} not found")))?;
        let spec = KeySpec {
            provider: &row.provider,
            key: &row.key,
            role: row.role.as_deref(),
            trust: Some(row.role_trust),
            audience: row.audience.as_deref(),
        };
        let (ok, steps, _, denial) = self.validate_resolved(org, &spec, Some(n)).await?;
        // The key's KMS said the customer withdrew: as from any other call or the health
        // check, the org's keys go at once (here, before the audit write), everywhere, with
        // the denial as the key's health.
        match denial {
            Some(super::kms::Withdrew::Refused(e)) => {
                self.withdrawn(&cell, org, n, e.kind.as_str(), Some(e.to_string()))
                    .await?;
                return Ok((ok, steps));
            }
            Some(super::kms::Withdrew::Unusable { kind, detail }) => {
                self.withdrawn(&cell, org, n, kind.as_str(), Some(detail))
                    .await?;
                return Ok((ok, steps));
            }
            None => {}
        }
        let failed = steps.iter().find(|s| s.outcome == "fail");
        let (health, detail) = match failed {
            None => ("ok".to_owned(), None),
            Some(f) => (
                "validation_failed".to_owned(),
                Some(format!("{}: {}", f.step, f.detail)),
            ),
        };
        self.record_health(&cell, org, n, health, detail).await?;
        Ok((ok, steps))
    }

    /// Attaches a key after validating it live. The key as its KMS described it is stored (an
    /// AWS alias is kept for display only: re-pointing it must not orphan the copies). The key
    /// wraps every live root version before anything is stored; if any KMS call fails, nothing
    /// changes, now or later.
    pub async fn add_key(
        &self,
        org: ScopeId,
        name: &str,
        spec: &KeySpec<'_>,
    ) -> Result<(KeyView, Vec<StepView>)> {
        super::check_name(name)?;
        // Refused on a paused org (core's rule), before the live validation's KMS calls: the
        // attach would wrap the roots under the new key.
        self.current_org(org).await?.snapshot().check_key_work()?;
        let (ok, steps, resolved, _) = self.validate_resolved(org, spec, None).await?;
        if !ok {
            return Err(ServiceError::Validation(steps));
        }
        let (access, pasted, described) = resolved.ok_or_else(|| {
            ServiceError::Invalid("the key's description did not name the key".into())
        })?;
        let key = access
            .provider
            .resolved(&pasted, &described)
            .map_err(ServiceError::Invalid)?;
        let cell = self.current_org(org).await?;
        let mut row = CmkRow {
            n: 0,
            name: name.to_owned(),
            provider: access.provider.name().into(),
            pasted: (pasted.key != key).then(|| pasted.key.clone()),
            key,
            role: access.access.role.clone(),
            role_trust: access.access.trust,
            audience: access.access.audience.clone(),
            created_at: store::now_ms(),
            health: Some("ok".into()),
            health_detail: None,
            health_at: Some(store::now_ms()),
        };
        // The copies are made first, through a temporary entry for the new key's access. Its
        // number is picked and taken under one lock: two attaches at once must not share one
        // entry, or one would wrap the roots with the other's key.
        let n = {
            let mut cmks = cell.cmks.write().unwrap_or_else(|p| p.into_inner());
            row.n = cmks.keys().next_back().map_or(1, |n| n + 1);
            cmks.insert(row.n, row.clone());
            row.n
        };
        let temporary = row.clone();
        let attached = async {
            let copies = self.wrap_roots(&cell, &cell.snapshot(), n).await?;
            self.transition_with(org, BTreeMap::new(), super::Extra::InsertCmk(row), |o| {
                let mut effects = o.attach_cmk(n)?;
                for (v, c) in copies {
                    effects.extend(o.record_root_copy(HolderId::Cmk(n), v, c)?);
                }
                Ok(((), effects))
            })
            .await
        }
        .await;
        // Failed: the temporary entry goes, if it is still there: a committed attach (this
        // one's, or another's of the same number on a cell loaded meanwhile) replaced it with
        // the stored row, which stays.
        if let Err(e) = attached {
            let mut cmks = cell.cmks.write().unwrap_or_else(|p| p.into_inner());
            if cmks.get(&n) == Some(&temporary) {
                cmks.remove(&n);
            }
            return Err(e);
        }
        let key = self
            .keys(org)
            .await?
            .keys
            .into_iter()
            .find(|k| k.id == holder_name(HolderId::Cmk(n)))
            .ok_or_else(|| ServiceError::NotFound("key".into()))?;
        Ok((key, steps))
    }

    /// The org's keys: the managed key and every attached CMK, and whether the vendor can
    /// decrypt without the customer's KMS.
    pub async fn keys(&self, org: ScopeId) -> Result<KeysView> {
        let cell = self.current_org(org).await?;
        self.expire_grace(&cell, org).await?;
        let snap = cell.snapshot();
        let rows = cell.cmks.read().unwrap_or_else(|p| p.into_inner()).clone();
        let keys = snap
            .holders()
            .map(|h| {
                let row = match h.id {
                    HolderId::Cmk(n) => rows.get(&n),
                    HolderId::Managed => None,
                };
                KeyView {
                    id: holder_name(h.id),
                    name: row.map_or_else(|| "managed".into(), |r| r.name.clone()),
                    r#type: row.map_or_else(|| "managed".into(), |r| r.provider.clone()),
                    key: row.map(|r| r.key.clone()),
                    role: row.and_then(|r| r.role.clone()),
                    role_trust: row
                        .filter(|r| r.role.is_some())
                        .map(|r| r.role_trust.as_str().to_owned()),
                    audience: row.and_then(|r| r.audience.clone()),
                    default: h.id == snap.default_holder(),
                    state: h.status.as_str().into(),
                    health: row.and_then(|r| r.health.clone()),
                    health_detail: row.and_then(|r| r.health_detail.clone()),
                    health_at: row.and_then(|r| r.health_at),
                    key_pasted: row.and_then(|r| r.pasted.clone()),
                    outage_grace: self.grace_view(&cell, h.id),
                }
            })
            .collect();
        Ok(KeysView {
            vendor_can_decrypt: snap.vendor_can_decrypt(),
            keys,
        })
    }

    fn holder(id: &str) -> Result<HolderId> {
        parse_holder(id).ok_or_else(|| {
            ServiceError::Invalid(format!("key id {id:?} is not `managed` or `cmk:N`"))
        })
    }

    /// A proof that `holder`'s copies give back the org's roots, from an unwrap through its KMS
    /// at this moment, compared with the roots from the current default holder. If the
    /// default's KMS refuses them (the customer disabled that key or removed its grant, or it
    /// is down), `holder` is the way back: its roots are checked against the scope keys they
    /// wrap instead ([`Org::prove_holder_by_tree`]).
    async fn prove(&self, cell: &OrgCell, holder: HolderId) -> Result<RootProof> {
        let snap = cell.snapshot();
        let fresh = self.fresh_roots(cell, &snap, holder).await?;
        let mut reference = Vec::with_capacity(fresh.len());
        for k in &fresh {
            match self.scope_key(cell, k.id()).await {
                Ok(r) => reference.push(ScopeKey::new(r.id(), r.duplicate_secret())),
                Err(ServiceError::Kms(e)) => {
                    tracing::info!(org = %snap.id(), holder = %holder, error = %e, "the default key's KMS refused its root; the new default's roots are checked against the tree");
                    return Ok(snap.prove_holder_by_tree(holder, &fresh)?);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(snap.prove_holder(holder, &fresh, &reference)?)
    }

    /// Makes `key` the default holder (it must hold every live root version).
    ///
    /// A customer key: its copies are unwrapped through its KMS now and compared with the root
    /// (the proof), then the managed key's copies are destroyed in the same transaction (BYOK
    /// is exclusive). The managed key: if it no longer holds the root (BYOK), the root is
    /// unwrapped through the current default customer key now, never from the cache, so with
    /// the grant removed this fails with the KMS error and changes nothing.
    pub async fn set_default(&self, org: ScopeId, key: &str) -> Result<()> {
        let h = Self::holder(key)?;
        let cell = self.current_org(org).await?;
        let snap = cell.snapshot();
        if snap.default_holder() == h {
            return Ok(());
        }
        match h {
            HolderId::Cmk(_) => {
                let proof = self.prove(&cell, h).await?;
                self.transition(org, BTreeMap::new(), |o| {
                    Ok(((), o.set_default(h, Some(&proof))?))
                })
                .await
            }
            HolderId::Managed if snap.vendor_can_decrypt() => {
                self.transition(org, BTreeMap::new(), |o| Ok(((), o.set_default(h, None)?)))
                    .await
            }
            HolderId::Managed => {
                let roots = self
                    .fresh_roots(&cell, &snap, snap.default_holder())
                    .await?;
                let managed = &self.managed;
                self.transition(org, BTreeMap::new(), |o| {
                    Ok((
                        (),
                        o.make_managed_default(managed, &roots, &mut rand::rng())?,
                    ))
                })
                .await
            }
        }
    }

    /// Disables `key`; `target` (ready) keeps the root copies, and becomes the default if `key`
    /// was (proven as for [`Self::set_default`]). The disabled key's copies are destroyed.
    pub async fn disable(&self, org: ScopeId, key: &str, target: &str) -> Result<()> {
        let (h, t) = (Self::holder(key)?, Self::holder(target)?);
        let cell = self.current_org(org).await?;
        let proof = match t {
            HolderId::Cmk(_) if cell.snapshot().default_holder() == h => {
                Some(self.prove(&cell, t).await?)
            }
            _ => None,
        };
        self.transition(org, BTreeMap::new(), |o| {
            let mut effects = Vec::new();
            if o.default_holder() == h {
                effects.extend(o.set_default(t, proof.as_ref())?);
            }
            effects.extend(o.disable(h, t)?);
            Ok(((), effects))
        })
        .await
    }

    /// Enables a disabled customer key again: it wraps every live root version first, and only
    /// if every KMS call succeeded is it enabled, with its copies, in one transaction. A refused
    /// call changes nothing, now or later (no pending job is left behind).
    ///
    /// `managed` is refused: under BYOK the way back to the managed key is `set_default` or
    /// `disable_all`, which unwrap through the customer's KMS at that moment; in managed mode
    /// the managed key is the default and always enabled.
    pub async fn enable(&self, org: ScopeId, key: &str) -> Result<()> {
        let h = Self::holder(key)?;
        let HolderId::Cmk(n) = h else {
            return Err(ServiceError::Invalid(
                "only customer keys (cmk:N) are enabled; to go back to the managed key, make it the default or disable all customer keys".into(),
            ));
        };
        let cell = self.current_org(org).await?;
        let snap = cell.snapshot();
        let status = snap
            .holders()
            .find(|x| x.id == h)
            .map(|x| x.status)
            .ok_or_else(|| ServiceError::NotFound(format!("key {key} not found")))?;
        if status != HolderStatus::Disabled {
            return Ok(());
        }
        snap.check_key_work()?;
        if snap.job().is_some() {
            return Err(ServiceError::Scope(
                byok_core::scope::ScopeError::JobRunning,
            ));
        }
        let copies = self.wrap_roots(&cell, &snap, n).await?;
        self.transition(org, BTreeMap::new(), |o| {
            let mut effects = o.reenable(h)?;
            for (v, c) in copies {
                effects.extend(o.record_root_copy(h, v, c)?);
            }
            Ok(((), effects))
        })
        .await
    }

    /// Falls back to the managed key: it wraps every live root version and every CMK is
    /// disabled. Under BYOK the roots are unwrapped through the default customer key at this
    /// moment, never from the cache: with the grant removed this fails and changes nothing.
    pub async fn disable_all(&self, org: ScopeId) -> Result<()> {
        let cell = self.current_org(org).await?;
        let snap = cell.snapshot();
        // As in `set_default`: core refuses a paused org; asked before the KMS is.
        snap.check_usable(org).map_err(ServiceError::Scope)?;
        let roots = self
            .fresh_roots(&cell, &snap, snap.default_holder())
            .await?;
        let managed = &self.managed;
        self.transition(org, BTreeMap::new(), |o| {
            Ok(((), o.disable_all(managed, &roots, &mut rand::rng())?))
        })
        .await
    }
}
