//! Who may call an edge function. A lease lets the edge open every ciphertext of its scope, so
//! an edge anyone can reach opens them for anyone (a leaked backup of ciphertexts would be read
//! through it). The edge therefore serves nothing until its deployment says how callers are
//! checked: by a caller token it compares itself (`Authorization: Bearer`), or by the platform
//! in front of it (Cloudflare Access, a service binding, an API gateway, mTLS), which the
//! deployment vouches for by name. Unset is refused, not open: forgetting the setting must not
//! publish the scope.
//!
//! The caller is checked before anything else, so an unknown caller cannot make the edge ask
//! byok for a lease either. The example Worker and the `wasi:http` component share this code.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use byok_core::ApiCode;

use crate::edge::EdgeError;

/// The setting holding the caller token.
pub const TOKEN_SETTING: &str = "BYOK_EDGE_CALLER_TOKEN";
/// The setting holding the caller token callers move to while the token is rotated: both are
/// let in until the deployment makes it [`TOKEN_SETTING`] and unsets this one.
pub const NEXT_TOKEN_SETTING: &str = "BYOK_EDGE_CALLER_TOKEN_NEXT";
/// The setting saying the platform checks callers (`upstream`).
pub const CALLERS_SETTING: &str = "BYOK_EDGE_CALLERS";
/// The fewest characters a caller token has: 32 random characters are beyond guessing, and a
/// shorter one is more likely a placeholder or a password.
pub const MIN_TOKEN_LEN: usize = 32;
/// The most characters a caller token has (and an `Authorization` header is read for).
pub const MAX_TOKEN_LEN: usize = 512;

/// How this deployment checks its callers.
pub enum CallerGate {
    /// Each request carries `Authorization: Bearer <token>`; the SHA-256 of the token is kept
    /// (the compare is over digests, so it takes the same time whatever the length sent), and
    /// during a rotation that of the next token too.
    Token(Zeroizing<[u8; 32]>, Option<Zeroizing<[u8; 32]>>),
    /// The platform authenticates callers before they reach the edge.
    Upstream,
}

impl core::fmt::Debug for CallerGate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Token(..) => "CallerGate::Token(..)",
            Self::Upstream => "CallerGate::Upstream",
        })
    }
}

impl CallerGate {
    /// The gate the deployment's settings name: `token` is [`TOKEN_SETTING`], `callers` is
    /// [`CALLERS_SETTING`] (empty values count as unset). A token is checked even when the
    /// platform checks callers too. Neither, or a token too short or not printable, is
    /// `not_configured`.
    pub fn configure(token: Option<&str>, callers: Option<&str>) -> Result<Self, EdgeError> {
        let not_configured = |m: String| EdgeError::new(ApiCode::NotConfigured, m);
        match (
            token.filter(|t| !t.is_empty()),
            callers.filter(|c| !c.is_empty()),
        ) {
            (Some(t), _) => Ok(Self::Token(digest(TOKEN_SETTING, t)?, None)),
            (None, Some("upstream")) => Ok(Self::Upstream),
            (None, Some(other)) => Err(not_configured(format!(
                "{CALLERS_SETTING} is {other:?}; the only value is \"upstream\" (the platform \
                 authenticates callers before they reach this edge)"
            ))),
            (None, None) => Err(not_configured(format!(
                "this edge function checks no caller yet, and would open the scope's data for \
                 anyone who reaches it: set {TOKEN_SETTING} (a secret of {MIN_TOKEN_LEN}+ \
                 characters its callers send as `Authorization: Bearer <token>`), or \
                 {CALLERS_SETTING}=upstream when the platform authenticates callers"
            ))),
        }
    }

    /// The gate letting in the token callers move to during a rotation too: `next` is
    /// [`NEXT_TOKEN_SETTING`] (empty counts as unset). Set, it needs a [`TOKEN_SETTING`] (it is
    /// not a way to name a first token) and the same strength, or it is `not_configured`.
    ///
    /// A rotation: set the next token, deploy, move the callers to it, then make it the token
    /// and unset the next one, deploy. No caller is refused on the way.
    pub fn with_next_token(self, next: Option<&str>) -> Result<Self, EdgeError> {
        let Some(next) = next.filter(|n| !n.is_empty()) else {
            return Ok(self);
        };
        match self {
            Self::Token(current, _) => Ok(Self::Token(
                current,
                Some(digest(NEXT_TOKEN_SETTING, next)?),
            )),
            Self::Upstream => Err(EdgeError::new(
                ApiCode::NotConfigured,
                format!(
                    "{NEXT_TOKEN_SETTING} is the token callers move to while {TOKEN_SETTING} is \
                     rotated, and {TOKEN_SETTING} is unset: set that one (or unset this one)"
                ),
            )),
        }
    }

    /// Lets a request in, given its `Authorization` header (`None` when it has none), or
    /// refuses it with `unauthenticated`.
    pub fn admit(&self, authorization: Option<&[u8]>) -> Result<(), EdgeError> {
        let Self::Token(current, next) = self else {
            return Ok(());
        };
        let refused = |m: &str| EdgeError::new(ApiCode::Unauthenticated, m);
        let header = authorization
            .filter(|h| h.len() <= MAX_TOKEN_LEN + 16)
            .ok_or_else(|| refused("send `Authorization: Bearer <the edge's caller token>`"))?;
        // RFC 6750: the scheme is case-insensitive, then one space or more.
        let token = match header.split_at_checked(7) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => {
                rest.trim_ascii_start()
            }
            _ => {
                return Err(refused(
                    "the Authorization header is not `Bearer <the edge's caller token>`",
                ));
            }
        };
        let got = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(token)));
        // Both compared when both are set, whichever matches.
        let mut known = got.ct_eq(&**current);
        if let Some(next) = next {
            known |= got.ct_eq(&**next);
        }
        if bool::from(known) {
            Ok(())
        } else {
            Err(refused("the bearer token is not this edge's caller token"))
        }
    }
}

/// The SHA-256 of caller token `t`, from setting `name`, checked: 32 to 512 characters,
/// printable ASCII (callers send it in a header).
fn digest(name: &str, t: &str) -> Result<Zeroizing<[u8; 32]>, EdgeError> {
    let not_configured = |m: String| EdgeError::new(ApiCode::NotConfigured, m);
    if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&t.len()) {
        return Err(not_configured(format!(
            "{name} is {} characters; give {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} random ones \
             (openssl rand -base64 32)",
            t.len()
        )));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(not_configured(format!(
            "{name} holds a space or a character outside printable ASCII; callers send it in \
             a header: give printable ASCII only"
        )));
    }
    Ok(Zeroizing::new(Sha256::digest(t.as_bytes()).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCD";

    fn code(r: Result<impl Sized, EdgeError>) -> Option<ApiCode> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn unset_is_refused_not_open() {
        let e = CallerGate::configure(None, None).unwrap_err();
        assert_eq!(e.code, ApiCode::NotConfigured);
        assert!(e.message.contains(TOKEN_SETTING), "{}", e.message);
        assert_eq!(
            code(CallerGate::configure(Some(""), Some(""))),
            Some(ApiCode::NotConfigured)
        );
        assert_eq!(
            code(CallerGate::configure(None, Some("anyone"))),
            Some(ApiCode::NotConfigured)
        );
    }

    #[test]
    fn a_weak_or_unsendable_token_is_refused() {
        let short = &TOKEN[..MIN_TOKEN_LEN - 1];
        assert_eq!(
            code(CallerGate::configure(Some(short), None)),
            Some(ApiCode::NotConfigured)
        );
        assert!(CallerGate::configure(Some(&TOKEN[..MIN_TOKEN_LEN]), None).is_ok());
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            code(CallerGate::configure(Some(&long), None)),
            Some(ApiCode::NotConfigured)
        );
        let spaced = format!("{} x", &TOKEN[..MIN_TOKEN_LEN]);
        assert_eq!(
            code(CallerGate::configure(Some(&spaced), None)),
            Some(ApiCode::NotConfigured)
        );
    }

    #[test]
    fn only_the_caller_token_is_let_in() {
        let gate = CallerGate::configure(Some(TOKEN), Some("upstream")).unwrap();
        for ok in [
            format!("Bearer {TOKEN}"),
            format!("bearer {TOKEN}"),
            format!("BEARER   {TOKEN}"),
        ] {
            assert!(gate.admit(Some(ok.as_bytes())).is_ok(), "{ok}");
        }
        let mut wrong = TOKEN.as_bytes().to_vec();
        wrong[5] ^= 1;
        let wrong = format!("Bearer {}", String::from_utf8(wrong).unwrap());
        let prefix = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
        let longer = format!("Bearer {TOKEN}x");
        let basic = format!("Basic {TOKEN}");
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some(TOKEN),
            Some(wrong.as_str()),
            Some(prefix.as_str()),
            Some(longer.as_str()),
            Some(basic.as_str()),
            Some(huge.as_str()),
        ] {
            assert_eq!(
                code(gate.admit(bad.map(str::as_bytes))),
                Some(ApiCode::Unauthenticated),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn during_a_rotation_both_tokens_are_let_in_and_no_other() {
        const NEXT: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxw";
        let bearer = |t: &str| format!("Bearer {t}");
        let rotating = CallerGate::configure(Some(TOKEN), None)
            .and_then(|g| g.with_next_token(Some(NEXT)))
            .unwrap();
        for ok in [TOKEN, NEXT] {
            assert!(rotating.admit(Some(bearer(ok).as_bytes())).is_ok(), "{ok}");
        }
        let other = bearer(&TOKEN.replace('0', "1"));
        let glued = bearer(&format!("{TOKEN}{NEXT}"));
        for bad in [None, Some(other.as_str()), Some(glued.as_str())] {
            assert_eq!(
                code(rotating.admit(bad.map(str::as_bytes))),
                Some(ApiCode::Unauthenticated),
                "{bad:?}"
            );
        }
        // Unset or empty: the one token only.
        for unset in [None, Some("")] {
            let gate = CallerGate::configure(Some(TOKEN), None)
                .and_then(|g| g.with_next_token(unset))
                .unwrap();
            assert_eq!(
                code(gate.admit(Some(bearer(NEXT).as_bytes()))),
                Some(ApiCode::Unauthenticated)
            );
        }
        // Weak, or with no token to rotate from: not configured.
        for (token, callers, next) in [
            (Some(TOKEN), None, &NEXT[..MIN_TOKEN_LEN - 1]),
            (None, Some("upstream"), NEXT),
        ] {
            let e = CallerGate::configure(token, callers)
                .and_then(|g| g.with_next_token(Some(next)))
                .unwrap_err();
            assert_eq!(e.code, ApiCode::NotConfigured);
            assert!(e.message.contains(NEXT_TOKEN_SETTING), "{}", e.message);
        }
        assert_eq!(format!("{rotating:?}"), "CallerGate::Token(..)");
    }

    #[test]
    fn upstream_lets_every_request_in_and_the_token_stays_out_of_debug() {
        let gate = CallerGate::configure(None, Some("upstream")).unwrap();
        assert!(gate.admit(None).is_ok());
        let gate = CallerGate::configure(Some(TOKEN), None).unwrap();
        assert_eq!(format!("{gate:?}"), "CallerGate::Token(..)");
    }
}
