//! The sweep: a revoked subtree's stored data keys, deleted after the revoke in batches of
//! [`SWEEP_BATCH`], one transaction each (`store/sweep.rs` says why not in the revoke). It is
//! one of the org's jobs: it runs in the org's job turn (one runner across replicas), after a
//! revoke kicks it, and from the periodic scan after a crash or a restart.
//!
//! Nothing here decides what anyone may read: the revoke did, and its commit destroyed the
//! keys these rows were wrapped under. The sweep only gives the rows (and the org's room for
//! stored keys) back.

use byok_core::ScopeId;

use super::job_leases::JobTurn;
use super::{Result, Service};
use crate::store::{self, sweep};

/// Rows per sweep transaction: a few milliseconds of the one writer (SQLite) or of the org's
/// row lock (PostgreSQL), far under the statement timeout, so other writes wait little.
pub(super) const SWEEP_BATCH: u64 = 2000;

impl Service {
    /// Sweeps the org's revoked scopes' stored data keys out, unless another runner has the
    /// org's job turn (it sweeps them, or the next scan does).
    pub async fn run_sweep(&self, org: ScopeId) -> Result<()> {
        if sweep::waiting(self.store.pool(), org).await?.is_empty() {
            return Ok(());
        }
        let Some(turn) = self.job_turn(org).await? else {
            return Ok(());
        };
        let done = self.sweep_turn(org, &turn, SWEEP_BATCH).await;
        turn.end().await;
        done
    }

    /// [`Self::run_sweep`] for the holder of the org's job turn, `batch` rows a transaction.
    async fn sweep_turn(&self, org: ScopeId, turn: &JobTurn<'_>, batch: u64) -> Result<()> {
        // Read again as the runner: another may have swept some meanwhile.
        for scope in sweep::waiting(self.store.pool(), org).await? {
            loop {
                if turn.lost() {
                    return Ok(());
                }
                let mut w = self.store.write_org(org).await?;
                let swept = sweep::batch(&mut w, org, scope, batch, store::now_ms()).await?;
                w.commit().await?;
                match swept {
                    sweep::Swept::Some(_) => {}
                    sweep::Swept::Done(n) => {
                        tracing::info!(org = %org, scope = %scope, keys = n, "revoked scope's stored keys swept");
                        break;
                    }
                    sweep::Swept::NotWaiting => break,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use byok_core::ScopeId;

    use crate::service::{test_caller, test_service, test_team};
    use crate::store::{Database, data_keys, sweep};

    /// A revoke commits without deleting its scopes' stored keys (a scope with millions made
    /// its transaction outlast every deadline), yet they are gone for readers from its commit
    /// on: a read by id finds none, a delete by id deletes none. The sweep then deletes the
    /// rows in batches, gives the org's room back, and logs how many went; a scope that kept
    /// no key is never listed.
    async fn a_revoke_leaves_its_keys_to_the_sweep(db: &Database) {
        let s = test_service(db, 3);
        let (org, team) = test_team(&s, None).await;
        let id = |v: crate::service::ScopeView| ScopeId::parse_hex(&v.id).unwrap();
        // A child of the team with no key of its own: revoked too, never listed.
        id(s.create_scope(org, team, "empty").await.unwrap());
        let kept = id(s.create_scope(org, org, "kept").await.unwrap());
        let who = test_caller(&s, org).await;
        let ids: Vec<String> = s
            .create_stored_keys(&who, org, team, 7)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        s.create_stored_keys(&who, org, kept, 2).await.unwrap();
        s.revoke(org, team, &team.to_string()).await.unwrap();
        assert_eq!(
            sweep::test_rows(db, org, team).await,
            7,
            "the revoke deleted rows"
        );
        assert_eq!(sweep::waiting(db.pool(), org).await.unwrap(), [team]);
        let read = s.get_stored_keys(&who, org, &ids[..1]).await;
        assert!(
            matches!(read, Err(crate::service::ServiceError::NotFound(_))),
            "{read:?}"
        );
        assert_eq!(s.delete_stored_keys(org, &ids).await.unwrap(), 0);
        // Nor does a retirement batch read them (on a replica that has not heard of the revoke,
        // it would otherwise unwrap them before its version check drops the batch).
        assert!(
            data_keys::under(db.pool(), org, team, 1, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(data_keys::stored(db.pool(), org).await.unwrap(), 9);
        let turn = s.job_turn(org).await.unwrap().expect("the turn");
        s.sweep_turn(org, &turn, 3).await.unwrap();
        turn.end().await;
        assert_eq!(sweep::test_rows(db, org, team).await, 0);
        assert_eq!(sweep::test_rows(db, org, kept).await, 2);
        assert_eq!(data_keys::stored(db.pool(), org).await.unwrap(), 2);
        assert!(sweep::waiting(db.pool(), org).await.unwrap().is_empty());
        assert_eq!(
            sweep::test_swept(db, org).await,
            [
                serde_json::json!({ "type": "data_keys_swept", "scope": team.to_string(), "count": 7 })
            ]
        );
    }

    /// On SQLite, and on PostgreSQL when the tests have one.
    #[tokio::test]
    async fn a_revoke_leaves_its_keys_to_the_sweep_on_either_engine() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        a_revoke_leaves_its_keys_to_the_sweep(&db).await;
        if let Some(db) = crate::store::test_postgres().await {
            a_revoke_leaves_its_keys_to_the_sweep(&db).await;
        }
    }
}
