//! The scope tree as the API sees it: views, create, pause, resume, revoke and rotate.

use std::collections::BTreeMap;

use byok_core::ScopeId;
use byok_core::scope::{Org, ScopeError};

use super::org_cell::OrgCell;
use super::{Result, Service, ServiceError};

/// A scope as the API shows it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ScopeView {
    /// Its id (32 hex digits).
    pub id: String,
    /// Its parent's id (`null` for the org scope).
    pub parent: Option<String>,
    /// Its name.
    pub name: String,
    /// The state set on it: `active`, `paused` or `revoked`.
    pub state: String,
    /// The state that applies to it: `active`, `paused` or `revoked`.
    pub effective: String,
    /// The scope whose pause or revocation applies, if any.
    pub effective_by: Option<String>,
    /// Its newest key version (`null` once revoked).
    pub key_version: Option<u32>,
    /// Depth below the org scope.
    pub depth: u16,
}

impl Service {
    /// The view of scope `id`.
    pub fn view(&self, cell: &OrgCell, org: &Org, id: ScopeId) -> Result<ScopeView> {
        let scope = org
            .scope(id)
            .ok_or_else(|| ServiceError::NotFound("scope not found".into()))?;
        let (effective, by) = org.effective(id)?.parts();
        Ok(ScopeView {
            id: id.to_string(),
            parent: scope.parent.map(|p| p.to_string()),
            name: cell.name(id),
            state: scope.state.as_str().into(),
            effective: effective.as_str().into(),
            effective_by: by.map(|s| s.to_string()),
            key_version: scope.current_version(),
            depth: scope.depth,
        })
    }

    /// Every scope of `org`, parents before children.
    pub async fn list_scopes(&self, org: ScopeId) -> Result<Vec<ScopeView>> {
        let cell = self.org(org).await?;
        let snap = cell.snapshot();
        let mut out = Vec::with_capacity(snap.len());
        let mut queue = std::collections::VecDeque::from([snap.id()]);
        while let Some(id) = queue.pop_front() {
            out.push(self.view(&cell, &snap, id)?);
            if let Some(s) = snap.scope(id) {
                queue.extend(s.children.iter().copied());
            }
        }
        Ok(out)
    }

    /// One scope of `org`.
    pub async fn get_scope(&self, org: ScopeId, id: ScopeId) -> Result<ScopeView> {
        let cell = self.org(org).await?;
        let snap = cell.snapshot();
        self.view(&cell, &snap, id)
    }

    /// Creates scope `name` under `parent`.
    pub async fn create_scope(
        &self,
        org: ScopeId,
        parent: ScopeId,
        name: &str,
    ) -> Result<ScopeView> {
        check_name(name)?;
        let cell = self.current_org(org).await?;
        let snap = cell.snapshot();
        if snap.scope(parent).is_none() {
            return Err(ServiceError::NotFound("parent scope not found".into()));
        }
        let parent_key = self.scope_key(&cell, snap.current_key_id(parent)?).await?;
        let id = ScopeId::random(&mut rand::rng());
        let names = BTreeMap::from([(id, name.to_owned())]);
        self.transition(org, names, |o| {
            let (_key, effects) = o.create_scope(id, parent, &parent_key, &mut rand::rng())?;
            Ok(((), effects))
        })
        .await?;
        self.get_scope(org, id).await
    }

    /// Pauses a scope and its subtree.
    pub async fn pause(&self, org: ScopeId, id: ScopeId) -> Result<ScopeView> {
        self.transition(org, BTreeMap::new(), |o| Ok(((), o.pause(id)?)))
            .await?;
        self.get_scope(org, id).await
    }

    /// Resumes a scope.
    pub async fn resume(&self, org: ScopeId, id: ScopeId) -> Result<ScopeView> {
        self.transition(org, BTreeMap::new(), |o| Ok(((), o.resume(id)?)))
            .await?;
        self.get_scope(org, id).await
    }

    /// Revokes a scope and its subtree, for good; `confirm` must be the scope id.
    pub async fn revoke(&self, org: ScopeId, id: ScopeId, confirm: &str) -> Result<ScopeView> {
        self.transition(org, BTreeMap::new(), |o| Ok(((), o.revoke(id, confirm)?)))
            .await?;
        self.get_scope(org, id).await
    }

    /// Adds a key version to a (child) scope.
    pub async fn rotate(&self, org: ScopeId, id: ScopeId) -> Result<ScopeView> {
        let cell = self.current_org(org).await?;
        let snap = cell.snapshot();
        let parent = snap
            .scope(id)
            .ok_or_else(|| ServiceError::NotFound("scope not found".into()))?
            .parent
            .ok_or(ServiceError::Scope(ScopeError::RootRotation))?;
        let parent_key = self.scope_key(&cell, snap.current_key_id(parent)?).await?;
        self.transition(org, BTreeMap::new(), |o| {
            let (_key, effects) = o.rotate(id, &parent_key, &mut rand::rng())?;
            Ok(((), effects))
        })
        .await?;
        self.get_scope(org, id).await
    }
}

/// Names: 1 to 200 characters, no control characters.
pub(super) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(
            "name must be 1 to 200 characters without control characters".into(),
        ));
    }
    Ok(())
}
