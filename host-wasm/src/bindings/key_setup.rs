//! Key setup for the browser: `parseKeyArn`, `parseGcpKey`, `parseAzureKey`, `keyGrant`, `providerGrant` and
//! `offlineValidation`, core's own
//! functions (see [`crate::key_setup`]), so the page says what the server will say.

use byok_core::kms::aws::policy::RoleTrust;
use js_sys::{JsString, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use super::{rng, thrown, to_js};
use crate::key_setup::{self, GrantRequest, IdentifierProblem};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** What a key identifier names. */
export interface ParsedKey {
  partition: "aws" | "aws-cn" | "aws-us-gov";
  region: string;
  account: string;
  kind: "key" | "alias";
  /** The key id or the alias name. */
  name: string;
  /** The identifier as byok stores and sends it. */
  key_id: string;
  /** The KMS endpoint byok will call (made from partition and region only). */
  endpoint: string;
}

/** The grant for a key, as the server's policy endpoint answers it. */
export interface Grant {
  principal: string;
  key_policy_statements: object[];
  role_policy: object | null;
  trust_policy: object | null;
  external_id: string;
}

/** What a Cloud KMS key name names. */
export interface ParsedGcpKey {
  project: string;
  location: string;
  key_ring: string;
  crypto_key: string;
  /** The version named, if one was (byok stores the key; decrypt picks the version). */
  version: number | null;
  /** The CryptoKey name byok stores and calls. */
  key: string;
  /** The host byok calls (fixed). */
  endpoint: string;
}

/** What an Azure Key Vault or Managed HSM key URL names. */
export interface ParsedAzureKey {
  service: "vault" | "managed_hsm";
  /** "Azure", "Azure China" or "Azure Government". */
  cloud: string;
  /** The vault or Managed HSM name. */
  vault: string;
  /** The key name. */
  name: string;
  /** The version named, if one was (byok keeps the key; each copy names its version). */
  version: string | null;
  /** How byok wraps with it. */
  algorithm: "RSA-OAEP-256" | "A256KW";
  /** The key URL byok stores. */
  key: string;
  /** The host byok calls (rebuilt from the checked parts). */
  endpoint: string;
}

/** A grant for any provider, as the server's policy endpoint answers it. */
export interface ProviderGrant {
  principal: string;
  key_policy_statements: object;
  role_policy: object | null;
  trust_policy: object | null;
  commands: string[];
}

/** What `providerGrant` needs: the admin's fields, and the server's grant facts
 * (`GET /v1/orgs/{org}/keys/grant-facts`). */
export interface ProviderGrantRequest {
  provider: "aws" | "gcp" | "azure";
  key: string;
  role?: string;
  audience?: string;
  roleTrust?: "oidc" | "external_id";
  org: string;
  externalId: string;
  issuerUrl?: string;
  vendorPrincipal?: string;
}

/** One validation step, as in the server's report. */
export interface StepReport {
  step: "parse identifier" | "region allowed" | "describe key" | "wrap probe" | "unwrap probe" | "compare";
  outcome: "pass" | "fail" | "skipped";
  detail: string;
  fix: string | null;
}

/** What `keyGrant` needs: the server's policy answer gives `vendorPrincipal` (its `principal`
 * without a role), `externalId`, `issuer` (byok's OIDC issuer without the scheme, empty if
 * none) and the `roleTrust` it defaults to. */
export interface GrantRequest {
  keyArn: string;
  roleArn?: string;
  vendorPrincipal: string;
  externalId: string;
  org: string;
  /** How byok assumes the role: with its OIDC token, or presenting the external id (default). */
  roleTrust?: "oidc" | "external_id";
  issuer?: string;
}
"#;

/// A `ByokError` (`invalid_request`) with the part at fault in `part`, what was there in
/// `found` and what is expected in `expected`, for the page to show beside the field.
fn problem(p: IdentifierProblem) -> JsValue {
    let (part, found, expected) = (p.part, p.found.clone(), p.expected);
    let err = thrown(p.into());
    let _ = Reflect::set(&err, &"part".into(), &part.into());
    let _ = Reflect::set(&err, &"found".into(), &found.into());
    let _ = Reflect::set(&err, &"expected".into(), &expected.into());
    err
}

/// The most UTF-16 units a text given to these functions may have. Identifiers, ARNs and org
/// ids are at most a few thousand; a paste of megabytes (or a script's) is refused before it
/// is copied into the module, where a copy that does not fit its memory aborts it.
const MAX_TEXT_UNITS: usize = 64 * 1024;

/// The most regions an org's allow-list given to `offlineValidation` may have.
const MAX_REGIONS: u32 = 256;

#[wasm_bindgen]
extern "C" {
    /// `Array.isArray(value)`, its throw (a revoked proxy) caught.
    #[wasm_bindgen(catch, js_namespace = Array, js_name = isArray)]
    fn is_array(value: &JsValue) -> Result<bool, JsValue>;
}

/// `value` as text if it is a string of at most [`MAX_TEXT_UNITS`] units (measured before it is
/// copied in); `None` if it is not a string; `invalid_request` naming `what` if it is longer.
fn measured(value: &JsValue, what: &str) -> Result<Option<String>, JsValue> {
    let Some(s) = value.dyn_ref::<JsString>() else {
        return Ok(None);
    };
    let units = s.length() as usize;
    if units > MAX_TEXT_UNITS {
        return Err(invalid(format!(
            "{what} is {units} characters long, over the {MAX_TEXT_UNITS} it may have"
        )));
    }
    Ok(s.as_string())
}

/// A text argument: a string of at most [`MAX_TEXT_UNITS`] units, or `invalid_request`.
fn text_arg(value: &JsValue, what: &str) -> Result<String, JsValue> {
    measured(value, what)?.ok_or_else(|| invalid(format!("{what} must be a string")))
}

/// Parses a pasted AWS KMS key or alias ARN (whitespace around it is ignored). Throws a
/// `ByokError` with code `invalid_request` and `part`, `found`, `expected` when it is not one.
#[wasm_bindgen(js_name = parseKeyArn, unchecked_return_type = "ParsedKey")]
pub fn parse_key_arn(
    #[wasm_bindgen(unchecked_param_type = "string")] identifier: JsValue,
) -> Result<JsValue, JsValue> {
    let identifier = text_arg(&identifier, "the key identifier")?;
    key_setup::parse_key(&identifier)
        .map(|k| to_js(&k))
        .map_err(problem)
}

/// Field `field` of `o` if it is a string (measured: [`measured`]).
fn text(o: &JsValue, field: &str) -> Result<Option<String>, JsValue> {
    match Reflect::get(o, &field.into()) {
        Ok(v) => measured(&v, field),
        Err(_) => Ok(None),
    }
}

fn invalid(message: String) -> JsValue {
    thrown(crate::edge::EdgeError::new(
        byok_core::ApiCode::InvalidRequest,
        message,
    ))
}

/// Field `field` of `o`, a string, or an `invalid_request` naming it.
fn required(o: &JsValue, field: &str) -> Result<String, JsValue> {
    text(o, field)?.ok_or_else(|| invalid(format!("{field} is required (a string)")))
}

/// `roleTrust`: `oidc`, `external_id`, or absent.
fn role_trust(asked: Option<&str>) -> Result<Option<RoleTrust>, JsValue> {
    asked
        .map(|t| {
            RoleTrust::parse(t)
                .ok_or_else(|| invalid(format!("roleTrust {t:?} is not `oidc` or `external_id`")))
        })
        .transpose()
}

/// Parses a pasted Cloud KMS key or key version name. Throws like [`parse_key_arn`].
#[wasm_bindgen(js_name = parseGcpKey, unchecked_return_type = "ParsedGcpKey")]
pub fn parse_gcp_key(
    #[wasm_bindgen(unchecked_param_type = "string")] identifier: JsValue,
) -> Result<JsValue, JsValue> {
    let identifier = text_arg(&identifier, "the key identifier")?;
    key_setup::parse_gcp_key(&identifier)
        .map(|k| to_js(&k))
        .map_err(problem)
}

/// Parses a pasted Azure key URL (vault or Managed HSM, any cloud, with or without a
/// version). Throws like [`parse_key_arn`].
#[wasm_bindgen(js_name = parseAzureKey, unchecked_return_type = "ParsedAzureKey")]
pub fn parse_azure_key(
    #[wasm_bindgen(unchecked_param_type = "string")] identifier: JsValue,
) -> Result<JsValue, JsValue> {
    let identifier = text_arg(&identifier, "the key identifier")?;
    key_setup::parse_azure_key(&identifier)
        .map(|k| to_js(&k))
        .map_err(problem)
}

/// The exact grant for a key of any provider and this org, by the provider's own function
/// (the server's). Throws a `ByokError`: `invalid_request` for a bad field, `not_configured`
/// when the grant needs what the server lacks (an issuer, a vendor principal).
#[wasm_bindgen(js_name = providerGrant, unchecked_return_type = "ProviderGrant")]
pub fn provider_grant(
    #[wasm_bindgen(unchecked_param_type = "ProviderGrantRequest")] request: JsValue,
) -> Result<JsValue, JsValue> {
    let need = |field: &str| required(&request, field);
    let optional = |field: &str| -> Result<Option<String>, JsValue> {
        Ok(text(&request, field)?.filter(|v| !v.trim().is_empty()))
    };
    let role_trust = role_trust(optional("roleTrust")?.as_deref())?;
    let r = key_setup::ProviderGrantRequest {
        provider: need("provider")?,
        key: need("key")?,
        role: optional("role")?,
        audience: optional("audience")?,
        role_trust,
        org: need("org")?,
        external_id: need("externalId")?,
        issuer_url: optional("issuerUrl")?,
        vendor_principal: optional("vendorPrincipal")?,
    };
    key_setup::provider_grant(&r)
        .map(|g| to_js(&g))
        .map_err(thrown)
}

/// The exact grant for a key and this org: key policy statements, and with a role its
/// permissions and trust policies. Throws like [`parse_key_arn`] for a bad key or role ARN.
#[wasm_bindgen(js_name = keyGrant, unchecked_return_type = "Grant")]
pub fn key_grant(
    #[wasm_bindgen(unchecked_param_type = "GrantRequest")] request: JsValue,
) -> Result<JsValue, JsValue> {
    let need = |field: &str| required(&request, field);
    let (key_arn, vendor_principal, external_id, org) = (
        need("keyArn")?,
        need("vendorPrincipal")?,
        need("externalId")?,
        need("org")?,
    );
    let role_arn = text(&request, "roleArn")?.filter(|r| !r.trim().is_empty());
    let role_trust =
        role_trust(text(&request, "roleTrust")?.as_deref())?.unwrap_or(RoleTrust::ExternalId);
    let issuer = text(&request, "issuer")?.unwrap_or_default();
    let g = key_setup::grant(&GrantRequest {
        key_arn: &key_arn,
        role_arn: role_arn.as_deref(),
        vendor_principal: &vendor_principal,
        external_id: &external_id,
        org: &org,
        role_trust,
        issuer: &issuer,
    })
    .map_err(problem)?;
    Ok(to_js(&g))
}

/// The validation steps that need no KMS (`parse identifier`, `region allowed`; the rest
/// `skipped` if one failed), in the server's report shape and words. `regions` is the org's
/// allowed regions (empty: any); `principal` and `org` are used in fixes. Throws
/// `invalid_request` for an argument of the wrong type or size.
#[wasm_bindgen(js_name = offlineValidation, unchecked_return_type = "StepReport[]")]
pub fn offline_validation(
    #[wasm_bindgen(unchecked_param_type = "string")] identifier: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string[]")] regions: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string")] principal: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string")] org: JsValue,
) -> Result<JsValue, JsValue> {
    let identifier = text_arg(&identifier, "the key identifier")?;
    // Recognised, measured and read through imports that catch (`Array.isArray` throws for a
    // revoked proxy; `Reflect` comes back with an error when a proxy trap or a getter throws),
    // as a context is: no JS exception may unwind through this module.
    let unreadable = || invalid("regions could not be read".into());
    if !is_array(&regions).map_err(|_| unreadable())? {
        return Err(invalid("regions must be an array of strings".into()));
    }
    let regions: &js_sys::Object = regions.unchecked_ref();
    let length = Reflect::get(regions, &"length".into())
        .ok()
        .and_then(|n| n.as_f64())
        .filter(|n| *n >= 0.0 && n.fract() == 0.0)
        .ok_or_else(unreadable)?;
    if length > f64::from(MAX_REGIONS) {
        return Err(invalid(format!(
            "regions has {length} entries, over the {MAX_REGIONS} it may have"
        )));
    }
    // At most `MAX_REGIONS`, a whole number.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let length = length as u32;
    let regions = (0..length)
        .map(|i| {
            let r = Reflect::get_u32(regions, i).map_err(|_| unreadable())?;
            text_arg(&r, "a region")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let regions: Vec<&str> = regions.iter().map(String::as_str).collect();
    let (principal, org) = (text_arg(&principal, "principal")?, text_arg(&org, "org")?);
    Ok(to_js(&key_setup::offline_steps(
        &identifier,
        &regions,
        &principal,
        &org,
        &mut rng(),
    )))
}
