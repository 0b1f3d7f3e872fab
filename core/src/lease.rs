//! Edge leases: the document a server hands a `service` caller so that it can encrypt and decrypt
//! for one scope without a round trip per message, and the rules every host applies to it.
//!
//! The document travels as JSON:
//!
//! ```json
//! {"scope": "<32 hex digits>", "current_version": 2,
//!  "keys": [{"version": 1, "key": "<base64 of 32 bytes>"}, {"version": 2, "key": "..."}],
//!  "expires_at": 1767225600000, "ttl_ms": 60000}
//! ```
//!
//! [`Document`] is that JSON as it is; [`Lease`] is a checked document: the scope id parses, every
//! key is 32 bytes, no version appears twice and the current version has a key. Hosts parse with
//! [`Lease::parse`] and never read the JSON by hand.
//!
//! ## Expiry and renewal
//!
//! Time is passed in, as milliseconds since the Unix epoch (the unit of `expires_at`).
//!
//! - The edge's clock is not the server's. `expires_at` is the server's; `ttl_ms` is how long
//!   the lease lasts as issued. [`Lease::parse`] takes the time the answer arrived and ends the
//!   lease at whichever comes first: `expires_at`, or arrival + `ttl_ms` on the edge's own
//!   clock. So an edge whose clock is behind (by minutes, say) still stops within the lease
//!   TTL of its issue, plus the answer's time in transit, instead of the TTL plus its lag; a
//!   server whose clock is ahead does not stretch it either. Everything below works on that
//!   end.
//!
//! - Two clocks, read together. Every time a host passes in is a reading of its *lease clock*:
//!   in the edge hosts, wall time kept from running back or slower than the monotonic clock
//!   ([`clock::SteadyWall`]), so that a wall clock stepped back does not stretch a lease. After
//!   such a step that clock runs ahead of the wall, and `expires_at` (the server's wall time)
//!   would look that much nearer: a step back of more than the TTL made every lease arrive
//!   expired, until a restart. So [`Lease::parse`] also takes how far the lease clock is ahead
//!   of the wall clock when the answer is read, and moves `expires_at` onto the lease clock by
//!   it. From then on only lease-clock readings are compared, with the lease's end on that clock.
//!
//! - [`Lease::expired`]: at `expires_at` and after, the keys must not be used. A lease is valid
//!   for `now < expires_at`.
//! - [`Lease::renew_at`]: the rule is *renew when half of the life left on arrival has passed*.
//!   A host calls it with the time the lease arrived and asks for a new lease from then on. With
//!   the default 60 s lease that is after 30 s, which leaves the other 30 s for retries when the
//!   server is slow or briefly unreachable; a renewal the server refuses (scope paused or
//!   revoked) ends the use of the keys, so pause and revoke reach the edge within one lease TTL.
//!
//! [`holder::Holder`] is that rule as a state machine every edge runs (fetch, renew, a refusal
//! drops the keys at once, an outage does not, expiry drops them too).
//!
//! The keys are [`ScopeKey`]s: wiped on drop, never printed. `Debug` of a [`Lease`] or a
//! [`Document`] shows the scope, versions and expiry, never a key.

use alloc::collections::BTreeSet;
// utoipa's derive calls `format!` unqualified; this crate is no_std, so bring it in.
#[cfg(feature = "openapi")]
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

pub mod clock;
pub mod holder;
pub mod server;

use crate::crypto::ScopeKey;
use crate::key_id::{KeyId, ScopeId};
use crate::secret::{KEY_LEN, SecretBytes};

/// The largest lease document taken, in bytes: room for over 10,000 key versions (each under
/// 80 bytes), where a scope has a few. Checked before the document is read, so that a broken or
/// hostile answer cannot make an edge (a wasm instance with little memory) allocate at will.
pub const MAX_DOCUMENT_LEN: usize = 1 << 20;

/// One key version in a lease.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = LeaseKey))]
pub struct DocumentKey {
    /// The version.
    pub version: u32,
    /// The 32-byte scope key, base64. Keep it in memory only.
    pub key: String,
}

impl Drop for DocumentKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for DocumentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocumentKey")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A lease.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Lease))]
pub struct Document {
    /// The scope.
    pub scope: String,
    /// Its newest version: encrypt with it.
    pub current_version: u32,
    /// Every live version.
    pub keys: Vec<DocumentKey>,
    /// When the lease ends (ms since the epoch, the server's clock): stop using the keys then,
    /// renew before.
    pub expires_at: i64,
    /// How long the lease lasts from its issue, ms: the edge ends it this long after the answer
    /// arrived by its own clock, if that comes before `expires_at`. Required: without it an
    /// edge whose clock is behind the server's would use the keys for the TTL plus its lag,
    /// past the bound a withdrawal is promised.
    pub ttl_ms: u64,
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("scope", &self.scope)
            .field("current_version", &self.current_version)
            .field("keys", &self.keys)
            .field("expires_at", &self.expires_at)
            .field("ttl_ms", &self.ttl_ms)
            .finish()
    }
}

/// serde's message for a document it refused, without the string it quotes, if any: a
/// document with its fields mixed up (a key's base64 where a number goes) must not put key
/// text in an error, which hosts log.
fn without_strings(e: &serde_json::Error) -> String {
    let m = e.to_string();
    match (m.find('"'), m.rfind('"')) {
        (Some(a), Some(b)) if b > a => {
            let (head, tail) = (m.get(..a).unwrap_or(""), m.get(b + 1..).unwrap_or(""));
            alloc::format!("{head}(not shown){tail}")
        }
        _ => m,
    }
}

/// Why a lease document was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseError {
    /// Not JSON of the document's shape (a field missing or of the wrong type); serde's message,
    /// without the string it quotes.
    Json(String),
    /// `scope` is not 32 hex digits.
    Scope,
    /// A key is not base64.
    KeyNotBase64 {
        /// Its version.
        version: u32,
    },
    /// A key is not 32 bytes long.
    KeyLength {
        /// Its version.
        version: u32,
        /// Its length in bytes.
        len: usize,
    },
    /// Two keys have the same version.
    DuplicateVersion(u32),
    /// `current_version` has no key in `keys`.
    NoCurrentKey(u32),
    /// The document is over [`MAX_DOCUMENT_LEN`] bytes: not a lease any server sends.
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// The lease is for another scope than the one asked for (see [`Lease::check_scope`]).
    OtherScope,
    /// The lease has expired: its keys must not be used (renew it).
    Expired {
        /// When it ended, ms since the epoch.
        expires_at: i64,
        /// The time it was checked at, ms since the epoch.
        now: i64,
    },
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(e) => write!(f, "lease: not a lease document: {e}"),
            Self::Scope => f.write_str("lease: scope is not 32 hex digits"),
            Self::KeyNotBase64 { version } => {
                write!(f, "lease: key version {version} is not base64")
            }
            Self::KeyLength { version, len } => write!(
                f,
                "lease: key version {version} is {len} bytes (expected {KEY_LEN})"
            ),
            Self::DuplicateVersion(v) => write!(f, "lease: key version {v} appears twice"),
            Self::OtherScope => f.write_str("lease: for another scope than the one asked for"),
            Self::NoCurrentKey(v) => {
                write!(f, "lease: current_version {v} has no key in keys")
            }
            Self::TooLarge { len } => write!(
                f,
                "lease: the document is {len} bytes, over the {MAX_DOCUMENT_LEN} a lease can be; is the URL byok's lease endpoint?"
            ),
            Self::Expired { expires_at, now } => write!(
                f,
                "lease: expired at {expires_at} ms, {} ms ago; renew it",
                now.saturating_sub(*expires_at)
            ),
        }
    }
}

impl core::error::Error for LeaseError {}

impl LeaseError {
    /// The API error code a host reports for it: an expired lease is `lease_expired`, a
    /// document that is not a lease `invalid_request`.
    pub const fn api_code(&self) -> crate::ApiCode {
        match self {
            Self::Expired { .. } => crate::ApiCode::LeaseExpired,
            _ => crate::ApiCode::InvalidRequest,
        }
    }
}

/// A checked lease: the keys of one scope, until `expires_at`.
pub struct Lease {
    scope: ScopeId,
    current_version: u32,
    /// The current version's key, apart from `keys` so that reaching it needs no lookup that
    /// could fail.
    current: ScopeKey,
    keys: Vec<ScopeKey>,
    /// On the clock of whoever holds it: for a parsed lease, the first of the server's
    /// `expires_at` and arrival + `ttl_ms` (see the module docs).
    expires_at: i64,
    /// How long it lasts from its issue: sent on by [`Self::to_document`].
    ttl_ms: u64,
}

impl Lease {
    /// A lease on `keys` (all of scope `scope`, each version once) with `current_version` to
    /// encrypt with, ending at `expires_at` (ms since the epoch), `ttl_ms` after its issue (the
    /// server sets both, `expires_at` its issue time plus `ttl_ms`, so that an edge can end it
    /// by its own clock).
    ///
    /// # Errors
    ///
    /// [`LeaseError::DuplicateVersion`] or [`LeaseError::NoCurrentKey`]. A key of another scope
    /// is a host bug and is refused as [`LeaseError::Scope`].
    pub fn new(
        scope: ScopeId,
        current_version: u32,
        mut keys: Vec<ScopeKey>,
        expires_at: i64,
        ttl_ms: u64,
    ) -> Result<Self, LeaseError> {
        if keys.iter().any(|k| k.id().scope != scope) {
            return Err(LeaseError::Scope);
        }
        let mut seen = BTreeSet::new();
        for k in &keys {
            if !seen.insert(k.id().version) {
                return Err(LeaseError::DuplicateVersion(k.id().version));
            }
        }
        let current = keys
            .iter()
            .find(|k| k.id().version == current_version)
            .map(|k| ScopeKey::new(k.id(), k.duplicate_secret()))
            .ok_or(LeaseError::NoCurrentKey(current_version))?;
        keys.sort_by_key(|k| k.id().version);
        Ok(Self {
            scope,
            current_version,
            current,
            keys,
            expires_at,
            ttl_ms,
        })
    }

    /// How long it lasts from its issue, ms.
    pub const fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// Parses and checks a lease document (the server's JSON answer) that arrived at
    /// `received_ms` by this host's lease clock, which is `clock_ahead_ms` ahead of its wall
    /// clock now (the two read together; 0 for a host that keeps time by the wall clock alone):
    /// the lease ends at the first of the server's `expires_at` (moved onto the lease clock)
    /// and `received_ms + ttl_ms` (see the module docs).
    ///
    /// # Errors
    ///
    /// The first thing wrong with it, as a [`LeaseError`]; one over [`MAX_DOCUMENT_LEN`] bytes
    /// is refused unread. Expiry is not checked here: see [`Self::check_live`].
    pub fn parse(json: &[u8], received_ms: i64, clock_ahead_ms: i64) -> Result<Self, LeaseError> {
        if json.len() > MAX_DOCUMENT_LEN {
            return Err(LeaseError::TooLarge { len: json.len() });
        }
        let doc: Document =
            serde_json::from_slice(json).map_err(|e| LeaseError::Json(without_strings(&e)))?;
        Self::from_document(&doc, received_ms, clock_ahead_ms)
    }

    /// Checks a document that arrived at `received_ms` by a lease clock `clock_ahead_ms` ahead
    /// of the wall clock.
    ///
    /// # Errors
    ///
    /// As [`Self::parse`].
    pub fn from_document(
        doc: &Document,
        received_ms: i64,
        clock_ahead_ms: i64,
    ) -> Result<Self, LeaseError> {
        let scope = ScopeId::parse_hex(&doc.scope).ok_or(LeaseError::Scope)?;
        let mut keys = Vec::with_capacity(doc.keys.len());
        for k in &doc.keys {
            let bytes = Zeroizing::new(
                Base64::decode_vec(&k.key)
                    .map_err(|_| LeaseError::KeyNotBase64 { version: k.version })?,
            );
            let mut arr =
                Zeroizing::new(<[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
                    LeaseError::KeyLength {
                        version: k.version,
                        len: bytes.len(),
                    }
                })?);
            keys.push(ScopeKey::new(
                KeyId::new(scope, k.version),
                SecretBytes::from_bytes(&mut arr),
            ));
        }
        let ttl = doc.ttl_ms;
        let local_end = received_ms.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let server_end = doc.expires_at.saturating_add(clock_ahead_ms);
        let ends = server_end.min(local_end);
        Self::new(scope, doc.current_version, keys, ends, ttl)
    }

    /// The document to send (keys in base64, ascending versions). For the server's leases: it
    /// carries the whole `ttl_ms`, so a parsed lease sent on would last that long again on the
    /// recipient's clock; edges never forward one.
    pub fn to_document(&self) -> Document {
        Document {
            scope: self.scope.to_string(),
            current_version: self.current_version,
            keys: self
                .keys
                .iter()
                .map(|k| DocumentKey {
                    version: k.id().version,
                    key: Base64::encode_string(k.expose_secret()),
                })
                .collect(),
            expires_at: self.expires_at,
            ttl_ms: self.ttl_ms,
        }
    }

    /// The document as JSON, in one buffer wiped when dropped: sized up front so that no
    /// growth leaves a copy of the keys behind (the document's own base64 strings are wiped
    /// as it drops). What a server sends (with `std`: serde_json writes to a buffer only there).
    #[cfg(feature = "std")]
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        // A version's entry is under 80 bytes (`{"version":4294967295,"key":"<44>"}`), the
        // rest under 200 (a 32-digit scope, two i64 and a u64 with their names).
        let room = 256 + 96 * self.keys.len();
        let mut out = Zeroizing::new(Vec::with_capacity(room));
        serde_json::to_writer(&mut *out, &self.to_document())
            .unwrap_or_else(|_| unreachable!("a lease document is plain JSON"));
        debug_assert!(
            out.capacity() == room,
            "the buffer grew and left a copy behind"
        );
        out
    }

    /// The scope.
    pub fn scope(&self) -> ScopeId {
        self.scope
    }

    /// Checks that this lease is for `asked`, the scope an edge asked for (its id as
    /// configured, any case). A lease of another scope (a proxy that mixed answers up, a server
    /// bug) must not be used: data sealed with it would sit under a scope whose pause or revoke
    /// the edge's owner does not watch.
    ///
    /// # Errors
    ///
    /// [`LeaseError::OtherScope`].
    pub fn check_scope(&self, asked: &str) -> Result<(), LeaseError> {
        if ScopeId::parse_hex(asked) == Some(self.scope) {
            Ok(())
        } else {
            Err(LeaseError::OtherScope)
        }
    }

    /// The version to encrypt with.
    pub fn current_version(&self) -> u32 {
        self.current_version
    }

    /// When the lease ends, ms: on the lease clock of the host that parsed it (see the module
    /// docs), or the server's wall time in a lease it built.
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// The versions leased, ascending.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().map(|k| k.id().version)
    }

    /// The key to encrypt with.
    pub fn current_key(&self) -> &ScopeKey {
        &self.current
    }

    /// The key of `version`, if leased (to decrypt a ciphertext whose header names it).
    pub fn key(&self, version: u32) -> Option<&ScopeKey> {
        self.keys.iter().find(|k| k.id().version == version)
    }

    /// Whether the lease has ended at `now_ms` (ms since the epoch): true from `expires_at` on.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.deadline().check(now_ms).is_err()
    }

    /// `Ok` while the lease is valid at `now_ms`.
    ///
    /// # Errors
    ///
    /// [`LeaseError::Expired`] from `expires_at` on.
    pub fn check_live(&self, now_ms: i64) -> Result<(), LeaseError> {
        self.deadline().check(now_ms)
    }

    /// When the lease ends, without its keys: for what must stop with the lease but holds only
    /// a key derived from it (a stream's message key), so that no copy of the lease's keys is
    /// kept alongside.
    pub fn deadline(&self) -> Deadline {
        Deadline {
            expires_at: self.expires_at,
        }
    }

    /// When to ask for a new lease, for a lease that arrived at `received_ms`: halfway through the
    /// life it had left then (see the module docs). At once if it had already ended.
    pub fn renew_at(&self, received_ms: i64) -> i64 {
        let left = self.expires_at.saturating_sub(received_ms).max(0);
        received_ms.saturating_add(left / 2)
    }
}

/// The end of a lease ([`Lease::deadline`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    expires_at: i64,
}

impl Deadline {
    /// `Ok` before the lease's end, as [`Lease::check_live`].
    ///
    /// # Errors
    ///
    /// [`LeaseError::Expired`] from `expires_at` on.
    pub fn check(self, now_ms: i64) -> Result<(), LeaseError> {
        if now_ms >= self.expires_at {
            return Err(LeaseError::Expired {
                expires_at: self.expires_at,
                now: now_ms,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("scope", &self.scope)
            .field("current_version", &self.current_version)
            .field("versions", &self.versions().collect::<Vec<_>>())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    const SCOPE: &str = "0123456789abcdef0123456789abcdef";

    fn b64(byte: u8, len: usize) -> String {
        Base64::encode_string(&alloc::vec![byte; len])
    }

    fn doc(keys: &str, current: u32) -> String {
        format!(
            r#"{{"scope":"{SCOPE}","current_version":{current},"keys":[{keys}],"expires_at":100000,"ttl_ms":60000}}"#
        )
    }

    fn key(version: u32, byte: u8) -> String {
        format!(r#"{{"version":{version},"key":"{}"}}"#, b64(byte, 32))
    }

    #[test]
    fn a_lease_of_another_scope_is_refused() {
        let lease = good();
        assert_eq!(lease.check_scope(SCOPE), Ok(()));
        assert_eq!(lease.check_scope(&SCOPE.to_uppercase()), Ok(()));
        assert_eq!(
            lease.check_scope("ffffffffffffffffffffffffffffffff"),
            Err(LeaseError::OtherScope)
        );
        assert_eq!(lease.check_scope("not an id"), Err(LeaseError::OtherScope));
        assert_eq!(
            LeaseError::OtherScope.api_code(),
            crate::ApiCode::InvalidRequest
        );
    }

    fn good() -> Lease {
        let keys = format!("{},{}", key(2, 2), key(1, 1));
        Lease::parse(doc(&keys, 2).as_bytes(), 40_000, 0).unwrap()
    }

    fn err(json: &str) -> String {
        Lease::parse(json.as_bytes(), 0, 0).unwrap_err().to_string()
    }

    #[test]
    fn a_good_document_parses() {
        let l = good();
        assert_eq!(l.scope().to_string(), SCOPE);
        assert_eq!(l.current_version(), 2);
        assert_eq!(l.versions().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(l.current_key().expose_secret(), &[2u8; 32]);
        assert_eq!(l.current_key().id(), KeyId::new(l.scope(), 2));
        assert_eq!(l.key(1).unwrap().expose_secret(), &[1u8; 32]);
        assert!(l.key(3).is_none());
        assert_eq!(l.expires_at(), 100_000);
    }

    #[test]
    fn the_document_round_trips() {
        let l = good();
        let json = serde_json::to_string(&l.to_document()).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"scope":"{SCOPE}","current_version":2,"keys":[{},{}],"expires_at":100000,"ttl_ms":60000}}"#,
                key(1, 1),
                key(2, 2)
            )
        );
        let again = Lease::parse(json.as_bytes(), 0, 0).unwrap();
        assert_eq!(again.key(1).unwrap().expose_secret(), &[1u8; 32]);
    }

    /// An edge whose clock is ten minutes behind the server's gets a 60 s lease: by its clock
    /// `expires_at` is eleven minutes away, but the lease ends 60 s after it arrived, and is
    /// renewed after 30 s, as on a clock that agrees.
    #[test]
    fn an_edge_clock_behind_the_servers_does_not_stretch_the_lease() {
        let keys = format!("{},{}", key(2, 2), key(1, 1));
        let json = doc(&keys, 2);
        let behind = 40_000 - 600_000;
        let l = Lease::parse(json.as_bytes(), behind, 0).unwrap();
        assert_eq!(l.expires_at(), behind + 60_000);
        assert!(l.expired(behind + 60_000));
        assert_eq!(l.renew_at(behind), behind + 30_000);
        // A clock ahead ends it by the server's expiry: never later than either says.
        let ahead = Lease::parse(json.as_bytes(), 70_000, 0).unwrap();
        assert_eq!(ahead.expires_at(), 100_000);
        // The document keeps the TTL it arrived with (only the server sends documents: one
        // forwarded by an edge would restart that TTL on the recipient's clock).
        let forwarded = serde_json::to_value(l.to_document()).unwrap();
        assert_eq!(forwarded["ttl_ms"], 60_000);
        // Without `ttl_ms` the edge could only trust `expires_at` on its own clock: refused.
        let old = json.replace(r#","ttl_ms":60000"#, "");
        assert_eq!(
            Lease::parse(old.as_bytes(), behind, 0)
                .unwrap_err()
                .to_string(),
            "lease: not a lease document: missing field `ttl_ms` at line 1 column 227"
        );
    }

    /// The edge's wall clock was stepped back ten minutes (NTP correcting it), so its lease
    /// clock now runs ten minutes ahead of it. A 60 s lease still lasts 60 s on that clock:
    /// the server's `expires_at` is moved onto it. Read as it was (against the lease clock),
    /// the lease arrived expired, and so did every lease after it until a restart.
    #[test]
    fn a_lease_clock_ahead_of_the_wall_does_not_cut_leases_short() {
        let keys = format!("{},{}", key(2, 2), key(1, 1));
        let json = doc(&keys, 2);
        // The wall reads 40 000 when the answer arrives (issued at 40 000 by the server's
        // clock, which agrees); the lease clock reads 640 000.
        let ahead = 600_000;
        let received = 40_000 + ahead;
        let l = Lease::parse(json.as_bytes(), received, ahead).unwrap();
        assert_eq!(l.expires_at(), received + 60_000);
        assert!(!l.expired(received + 59_999));
        assert!(l.expired(received + 60_000));
        assert_eq!(l.renew_at(received), received + 30_000);
        // The server's end still bounds it on that clock: a lease that arrived late (issued
        // 50 s before) ends 10 s after it arrived, not 60.
        let late = Lease::parse(json.as_bytes(), received + 50_000, ahead).unwrap();
        assert_eq!(late.expires_at(), received + 60_000);
    }

    /// A document over the limit is refused before it is read; one at the limit is read.
    #[test]
    fn a_document_over_the_limit_is_refused_unread() {
        let k1 = key(1, 1);
        let pad = |n: usize| {
            let d = doc(&k1, 1);
            let room = n - d.len();
            format!("{}{}", d, " ".repeat(room))
        };
        let at = pad(MAX_DOCUMENT_LEN);
        assert_eq!(
            Lease::parse(at.as_bytes(), 0, 0)
                .unwrap()
                .versions()
                .count(),
            1
        );
        let over = pad(MAX_DOCUMENT_LEN + 1);
        assert_eq!(
            Lease::parse(over.as_bytes(), 0, 0).unwrap_err(),
            LeaseError::TooLarge {
                len: MAX_DOCUMENT_LEN + 1
            }
        );
        assert_eq!(
            LeaseError::TooLarge { len: 1 << 30 }.to_string(),
            "lease: the document is 1073741824 bytes, over the 1048576 a lease can be; is the URL byok's lease endpoint?"
        );
    }

    #[test]
    fn each_malformed_field_is_refused_with_its_error() {
        let k1 = key(1, 1);
        assert_eq!(
            err(&doc(&k1, 1).replace(SCOPE, "xyz")),
            "lease: scope is not 32 hex digits"
        );
        assert_eq!(
            err(&doc(r#"{"version":1,"key":"not base64!"}"#, 1)),
            "lease: key version 1 is not base64"
        );
        assert_eq!(
            err(&doc(
                &format!(r#"{{"version":1,"key":"{}"}}"#, b64(1, 31)),
                1
            )),
            "lease: key version 1 is 31 bytes (expected 32)"
        );
        assert_eq!(
            err(&doc(
                &format!(r#"{{"version":1,"key":"{}"}}"#, b64(1, 33)),
                1
            )),
            "lease: key version 1 is 33 bytes (expected 32)"
        );
        assert_eq!(
            err(&doc(&format!("{k1},{}", key(1, 2)), 1)),
            "lease: key version 1 appears twice"
        );
        assert_eq!(
            err(&doc(&k1, 2)),
            "lease: current_version 2 has no key in keys"
        );
        assert_eq!(
            err(&doc("", 1)),
            "lease: current_version 1 has no key in keys"
        );
        assert_eq!(
            err(&doc(&k1, 1).replace(r#","expires_at":100000"#, "")),
            "lease: not a lease document: missing field `expires_at` at line 1 column 155"
        );
        assert_eq!(
            err(&doc(&k1, 1).replace("100000", r#""soon""#)),
            "lease: not a lease document: invalid type: string (not shown), expected i64 at line 1 column 159"
        );
        // A key's base64 where a number goes: not echoed (hosts log these errors).
        let mixed = err(&doc(&k1, 1).replace("100000", &alloc::format!("\"{k1}\"")));
        assert!(!mixed.contains(k1.as_str()), "{mixed}");
        assert!(mixed.contains("(not shown), expected i64"), "{mixed}");
        assert_eq!(
            err(&doc(&k1, 1).replace(r#""current_version":1"#, r#""current_version":-1"#)),
            "lease: not a lease document: invalid value: integer `-1`, expected u32 at line 1 column 64"
        );
        assert_eq!(
            err("[]"),
            "lease: not a lease document: invalid length 0, expected struct Document with 5 elements at line 1 column 2"
        );
    }

    #[test]
    fn a_host_cannot_build_an_inconsistent_lease() {
        let scope = ScopeId::parse_hex(SCOPE).unwrap();
        let other = ScopeId::from_bytes([9; 16]);
        let k = |s, v: u32| {
            ScopeKey::new(
                KeyId::new(s, v),
                SecretBytes::from_bytes(&mut [u8::try_from(v).unwrap(); 32]),
            )
        };
        assert_eq!(
            Lease::new(scope, 1, alloc::vec![k(other, 1)], 0, 1).unwrap_err(),
            LeaseError::Scope
        );
        assert_eq!(
            Lease::new(scope, 1, alloc::vec![k(scope, 1), k(scope, 1)], 0, 1).unwrap_err(),
            LeaseError::DuplicateVersion(1)
        );
        assert_eq!(
            Lease::new(scope, 2, alloc::vec![k(scope, 1)], 0, 1).unwrap_err(),
            LeaseError::NoCurrentKey(2)
        );
    }

    /// The JSON a server sends fits the buffer sized for it (growth would leave unwiped
    /// copies of the keys), at the widest numbers, and reads back as the same lease.
    #[test]
    #[cfg(feature = "std")]
    fn a_leases_json_fits_its_buffer_and_reads_back() {
        let scope = ScopeId::parse_hex(SCOPE).unwrap();
        for n in [1u32, 2, 64] {
            let keys = (0..n)
                .map(|i| {
                    let v = u32::MAX - i;
                    ScopeKey::new(
                        KeyId::new(scope, v),
                        SecretBytes::from_bytes(&mut [0xff; 32]),
                    )
                })
                .collect();
            let lease = Lease::new(scope, u32::MAX, keys, i64::MIN, u64::MAX).unwrap();
            let json = lease.to_json();
            assert!(json.len() <= 256 + 96 * n as usize, "{} bytes", json.len());
            let back = Lease::parse(&json, i64::MIN, 0).unwrap();
            assert_eq!(back.to_json(), json);
            assert_eq!(back.versions().count(), n as usize);
        }
    }

    #[test]
    fn expiry_is_at_expires_at_not_after() {
        let l = good();
        assert!(!l.expired(99_999));
        assert!(l.expired(100_000));
        assert!(l.expired(100_001));
        assert_eq!(l.check_live(99_999), Ok(()));
        assert_eq!(
            l.check_live(100_250).unwrap_err().to_string(),
            "lease: expired at 100000 ms, 250 ms ago; renew it"
        );
        assert!(!l.expired(i64::MIN));
        assert!(l.expired(i64::MAX));
    }

    #[test]
    fn renewal_is_due_halfway_through_the_life_left_on_arrival() {
        let l = good();
        // Received at 40 000: 60 000 ms left, renew 30 000 ms later.
        assert_eq!(l.renew_at(40_000), 70_000);
        // Odd remainders round down: renew early rather than late.
        assert_eq!(l.renew_at(99_999), 99_999);
        assert_eq!(l.renew_at(99_997), 99_998);
        // Already over, or exactly over: renew at once.
        assert_eq!(l.renew_at(100_000), 100_000);
        assert_eq!(l.renew_at(250_000), 250_000);
        // No overflow at the ends of the clock.
        assert_eq!(l.renew_at(i64::MIN), i64::MIN + (i64::MAX / 2));
        assert!(l.renew_at(40_000) < l.expires_at());
    }

    #[test]
    fn debug_never_shows_a_key() {
        let l = good();
        let secret = b64(2, 32);
        for text in [format!("{l:?}"), format!("{:?}", l.to_document())] {
            assert!(!text.contains(&secret), "{text}");
            assert!(!text.contains("[2, 2"), "{text}");
            assert!(text.contains("expires_at: 100000"), "{text}");
        }
    }
}
