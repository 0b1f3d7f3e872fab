//! Usage marks: the audit log answers "did token X use scope Y since Z" for data calls too,
//! without a write per encrypt. The first admitted use of a scope's key by a token in each
//! [`WINDOW_MS`] logs a `scope_used` event, committed before the key is used; later uses in
//! the window are counted as covered by it. So every admitted use has a mark at most
//! [`WINDOW_MS`] before it, and a token with no mark for a scope since Z did not use it since
//! Z (through this server: what the lease holder does at the edge is logged as its lease).

use std::sync::Mutex;

use byok_core::ScopeId;
use serde_json::json;

use super::{Result, Service};
use crate::store::{self, TokenId, audit};

/// How long one mark covers a token's uses of a scope.
pub(super) const WINDOW_MS: i64 = 60_000;

/// Marks committed: (token id, scope) to the time of the mark. Bounded: pruned of stale marks
/// when it grows past [`MAX_MARKS`].
#[derive(Debug, Default)]
pub(super) struct UsageMarks(Mutex<super::FastMap<(TokenId, ScopeId), i64>>);

const MAX_MARKS: usize = 100_000;

impl Service {
    /// Logs a `scope_used` mark for the request's token on `scope` of `org` unless one in the
    /// window covers it. Outside a request (no token) there is nothing to mark. A write that
    /// fails fails the use: no use goes unmarked. Returns whether a mark was written (the call
    /// then waited for the store's writer).
    pub(super) async fn mark_use(&self, org: ScopeId, scope: ScopeId) -> Result<bool> {
        let Some(token) = audit::actor_id() else {
            return Ok(false);
        };
        // The window is measured on the service's monotonic clock: a wall clock stepped back
        // (NTP) on a replica cut off from the database must not stretch it. The audit row
        // carries the wall time.
        let now = i64::try_from(self.now().as_millis()).unwrap_or(i64::MAX);
        {
            let seen = self.usage.0.lock().unwrap_or_else(|p| p.into_inner());
            if seen
                .get(&(token, scope))
                .is_some_and(|at| now - at < WINDOW_MS)
            {
                return Ok(false);
            }
        }
        // Boxed: the write's state would otherwise size every data call's future.
        Box::pin(self.write_mark(org, scope, token, now)).await?;
        Ok(true)
    }

    /// Commits the mark for `token` on `scope` of `org`, taken at `now` (the monotonic clock,
    /// ms), then remembers it.
    async fn write_mark(
        &self,
        org: ScopeId,
        scope: ScopeId,
        token: TokenId,
        now: i64,
    ) -> Result<()> {
        // Not yet marked (or a concurrent first use is still writing its mark: both write,
        // a duplicate mark is harmless, a use before its mark committed is not).
        let mut w = self.store.write_org(org).await?;
        let event =
            json!({ "type": "scope_used", "scope": scope.to_string(), "window_ms": WINDOW_MS });
        audit::append(&mut w, org, store::now_ms(), &event).await?;
        w.commit().await?;
        let mut seen = self.usage.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_MARKS {
            seen.retain(|_, at| now - *at < WINDOW_MS);
        }
        seen.insert((token, scope), now);
        Ok(())
    }
}
