//! Root check values on the host: every root a key holder gives back is checked by core
//! ([`Org::verify_root`]) before anything uses it, and the versions an older byok stored
//! without one are recorded by `byok serve --record-root-checks`, once, after the upgrade.
//! Why: `core::scope::root_check`.

use std::collections::BTreeMap;

use byok_core::scope::{Org, RootVerdict};
use byok_core::{KeyId, ScopeId, ScopeKey};

use super::{Result, Service, ServiceError};
use crate::store::org_rows;

/// The `server_meta` row saying that no root version may be recorded any more: the upgrade
/// pass left none unchecked, or the database was made by a byok that keeps check values.
pub const DONE: &str = "root_checks_complete";

/// What `--record-root-checks` did.
#[derive(Debug, Default)]
pub struct RootCheckReport {
    /// Versions whose check value was recorded.
    pub recorded: usize,
    /// Versions left without one: org, version (0: the org did not load) and why.
    pub failed: Vec<(ScopeId, u32, String)>,
}

impl Service {
    /// Uses `root` (just given back by a holder) only if core finds it matches the check
    /// value stored with its version: a copy replaced in the database (an Azure RSA key wraps
    /// with its public half, so anyone can make one) would otherwise give a root of the
    /// writer's choosing, and every key wrapped under it from then on would be theirs. A
    /// version from before check values is refused, except by `--record-root-checks`, which
    /// records its check now (core checks that its children open under it first).
    pub(super) async fn check_root(&self, org: &Org, root: &ScopeKey) -> Result<()> {
        let accept = self.accept_unchecked_roots;
        match org.verify_root(&self.root_checker, root, accept) {
            Ok(RootVerdict::Checked) => Ok(()),
            Ok(RootVerdict::Unchecked) => {
                self.transition(org.id(), BTreeMap::new(), |o| {
                    Ok(((), o.record_root_check(&self.root_checker, root)?))
                })
                .await?;
                tracing::info!(
                    org = %org.id(),
                    version = root.id().version,
                    "recorded the check value of a root version stored without one"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    org = %org.id(),
                    version = root.id().version,
                    error = %e,
                    "refused a root key given back by its holder"
                );
                Err(e.into())
            }
        }
    }

    /// How many root versions are stored without a check value (the start warns of them).
    pub async fn unchecked_root_versions(&self) -> Result<u64> {
        Ok(org_rows::unchecked_roots(self.store.pool()).await?)
    }

    /// Records the check value of every root version stored without one, unwrapping it
    /// through its org's default holder now (`--record-root-checks`; the service must allow
    /// unchecked versions, [`Service::with_unchecked_roots`]). A version whose org is paused,
    /// whose holder refuses or is unreachable, or whose children do not open under it, is
    /// left without one and reported: running it again does what is left.
    pub async fn record_root_checks(&self) -> Result<RootCheckReport> {
        let mut report = RootCheckReport::default();
        for org in org_rows::orgs_with_unchecked_roots(self.store.pool()).await? {
            let cell = match self.org(org).await {
                Ok(cell) => cell,
                Err(e) => {
                    report.failed.push((org, 0, reason(&e)));
                    continue;
                }
            };
            let snap = cell.snapshot();
            for version in snap.unchecked_root_versions() {
                match self
                    .unwrap_root(&cell, &snap, KeyId::new(org, version))
                    .await
                {
                    Ok(_) => report.recorded += 1,
                    Err(e) => report.failed.push((org, version, reason(&e))),
                }
            }
        }
        Ok(report)
    }
}

/// Why a version was left unrecorded, for the operator's log: the rule's own message, or the
/// error's structure.
fn reason(e: &ServiceError) -> String {
    match e {
        ServiceError::Scope(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use byok_core::envelope::SealBuffer;
    use byok_core::scope::ScopeError;
    use byok_core::{KeyId, ScopeId, ScopeKey};

    use super::super::{Service, ServiceError};
    use crate::store::Database;

    /// What a database writer can do to an org whose default key wraps with a public half
    /// (Azure RSA): replace the copy of root version 1 with a root of its own, wrapped as the
    /// holder wraps. Simulated on the managed holder, whose key the test holds (a real writer
    /// cannot make a managed copy; it can make an Azure one). `(service over the same
    /// database, org, team)`; `check` is the stored check value's new bytes, if changed.
    async fn planted_root(
        dir: &std::path::Path,
        check: Option<Option<Vec<u8>>>,
    ) -> (Database, Service, ScopeId, ScopeId) {
        let db = Database::open_dir(dir).await.unwrap();
        let svc = crate::service::test_service(&db, 3);
        let (org, team) = crate::service::test_team(&svc, None).await;
        let snap = svc.org(org).await.unwrap().snapshot();
        let planted = ScopeKey::random(KeyId::new(org, 1), &mut rand::rng());
        let copy = snap
            .wrap_root_managed(&svc.managed, &planted, &mut rand::rng())
            .unwrap();
        sqlx::query("UPDATE root_copies SET wrapped = $1 WHERE org_id = $2 AND version = 1")
            .bind(copy)
            .bind(org.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        if let Some(check) = check {
            sqlx::query(
                "UPDATE scope_keys SET root_check = $1 WHERE org_id = $2 AND scope_id = $2",
            )
            .bind(check)
            .bind(org.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        }
        // A service started on the database as it is now (none of the old one's cache).
        let svc = crate::service::test_service(&db, 3);
        (db, svc, org, team)
    }

    /// A root copy replaced in the database gives back a root that does not match the
    /// check value stored with its version: refused before anything is wrapped under it (a
    /// new scope would otherwise get a key the writer knows) or opened with it.
    #[tokio::test]
    async fn a_root_copy_replaced_in_the_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, svc, org, team) = planted_root(dir.path(), None).await;
        let refused = |r: Result<(), ServiceError>| match r {
            Err(ServiceError::Scope(ScopeError::RootCheckFailed(k))) => k,
            other => panic!("{other:?}"),
        };
        let created = svc.create_scope(org, org, "after").await.map(drop);
        assert_eq!(refused(created), KeyId::new(org, 1));
        let who = crate::service::test_caller(&svc, org).await;
        let sealed = svc
            .encrypt(&who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new())
            .await
            .map(drop);
        assert_eq!(refused(sealed), KeyId::new(org, 1));
        assert_eq!(
            svc.org(org).await.unwrap().snapshot().len(),
            2,
            "no scope made"
        );
        assert!(svc.cache().get(KeyId::new(org, 1), svc.now()).is_none());
    }

    /// A root version stored without a check value (by a byok older than them) is refused;
    /// `--record-root-checks` records it through its holder, after which it is used, and
    /// checked like any other. The pass trusts no root its children do not open: that version
    /// is reported and stays refused.
    #[tokio::test]
    async fn an_unchecked_root_is_refused_until_the_pass_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let svc = crate::service::test_service(&db, 3);
        let (org, _) = crate::service::test_team(&svc, None).await;
        sqlx::query("UPDATE scope_keys SET root_check = NULL WHERE org_id = $1")
            .bind(org.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        let fresh = || crate::service::test_service(&db, 3);
        let unchecked = |r: Result<(), ServiceError>| match r {
            Err(ServiceError::Scope(ScopeError::RootUnchecked(k))) => k,
            other => panic!("{other:?}"),
        };
        let made = fresh().create_scope(org, org, "a").await.map(drop);
        assert_eq!(unchecked(made), KeyId::new(org, 1));
        assert_eq!(fresh().unchecked_root_versions().await.unwrap(), 1);
        let pass = || async {
            fresh()
                .with_unchecked_roots(true)
                .record_root_checks()
                .await
        };
        let report = pass().await.unwrap();
        assert_eq!((report.recorded, report.failed.len()), (1, 0), "{report:?}");
        let recorded: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit WHERE org_id = $1 AND event LIKE '%root_check_recorded%'",
        )
        .bind(org.to_string())
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(recorded, 1);
        assert_eq!(fresh().unchecked_root_versions().await.unwrap(), 0);
        fresh().create_scope(org, org, "b").await.unwrap();
        let again = pass().await.unwrap();
        assert_eq!((again.recorded, again.failed.len()), (0, 0), "{again:?}");

        // Planted and unchecked: a root its children do not open is not recorded.
        let dir = tempfile::tempdir().unwrap();
        let (db, svc, org, _) = planted_root(dir.path(), Some(None)).await;
        let report = svc.with_unchecked_roots(true).record_root_checks().await;
        let report = report.unwrap();
        assert_eq!(report.recorded, 0);
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].0, org);
        assert_eq!(report.failed[0].1, 1);
        assert!(report.failed[0].2.contains("does not open"), "{report:?}");
        let made = crate::service::test_service(&db, 3)
            .create_scope(org, org, "c")
            .await
            .map(drop);
        assert_eq!(unchecked(made), KeyId::new(org, 1));
    }
}
