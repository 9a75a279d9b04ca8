//! Workspaces as their members and admins manage them: who may do what to
//! whom (`may`, a pure rule with a table of tests), members and roles,
//! invitations by link bound to one email address, and the CLI sessions of
//! a member or of a whole workspace. Every change is audited with its
//! actor, workspace and target.

use super::audit::Audit;
use super::scopes::Role;
use super::signin::normalise_username;
use super::{Error, ErrorCode, Result, User, Workspace};
use crate::service::{Caller, Keyport};
use crate::store::members::Member;
/// A live session as the lists show it, with its user's email.
pub use crate::store::sessions::ListedSession;
use crate::store::sessions::Owner;
use crate::store::{self, audit::AuditEvent, audit::Filter};

/// The rows the dashboard and `/api/v1` list, as the store reads them.
pub use crate::store::api_keys::ApiKey;
pub use crate::store::audit::{AuditEvent as AuditRow, Filter as AuditFilter};
pub use crate::store::members::Member as MemberRow;

/// Rows per page on the dashboard and in `/api/v1`, unless asked otherwise.
pub const PAGE_SIZE: i64 = 50;
/// The most rows one page may hold.
pub const MAX_PAGE_SIZE: i64 = 500;

/// Something done to a member of a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberAction {
    Invite(Role),
    ChangeRole(Role),
    Remove,
    Leave,
    TransferOwnership,
}

/// Whether a member with role `actor` may do `action` to a member with
/// role `target` (for an invitation: the role offered), when the workspace
/// has `owners` owners. Admins manage those below them and never raise
/// anyone above themselves; owners manage everyone; the last owner can
/// neither leave nor be removed or demoted.
pub fn may(
    actor: Role,
    target: Role,
    action: MemberAction,
    owners: i64,
) -> Result<(), &'static str> {
    let last_owner = target == Role::Owner && owners <= 1;
    match action {
        MemberAction::Leave if actor == Role::Owner && owners <= 1 => {
            Err("the last owner cannot leave; make someone else owner first")
        }
        MemberAction::Leave => Ok(()),
        _ if actor < Role::Admin => Err("only admins and owners manage members"),
        MemberAction::Invite(role) if role > actor => {
            Err("you cannot invite someone to a role above your own")
        }
        MemberAction::Invite(_) => Ok(()),
        MemberAction::TransferOwnership if actor != Role::Owner => {
            Err("only an owner can hand over ownership")
        }
        MemberAction::TransferOwnership => Ok(()),
        _ if actor != Role::Owner && target >= actor => {
            Err("admins manage only members below them")
        }
        MemberAction::ChangeRole(role) if role > actor => {
            Err("you cannot raise anyone above your own role")
        }
        MemberAction::ChangeRole(role) if last_owner && role != Role::Owner => {
            Err("the last owner cannot be demoted; make someone else owner first")
        }
        MemberAction::Remove if last_owner => Err("the last owner cannot be removed"),
        MemberAction::ChangeRole(_) | MemberAction::Remove => Ok(()),
    }
}

/// One page of a list and where the next one starts.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` rows: the extra row only says there is more.
    pub(crate) fn of(mut rows: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit.max(0) as usize);
        let next = if more { rows.last().map(cursor) } else { None };
        Page { items: rows, next }
    }
}

/// `created_at.id` cursors for lists ordered newest first.
pub(crate) fn time_cursor(created_at: i64, id: &str) -> String {
    format!("{created_at}.{id}")
}

pub(crate) fn parse_time_cursor(cursor: Option<&str>) -> Option<(i64, &str)> {
    let (at, id) = cursor?.split_once('.')?;
    Some((at.parse().ok()?, id))
}

pub(crate) fn page_size(asked: Option<i64>) -> i64 {
    asked.unwrap_or(PAGE_SIZE).clamp(1, MAX_PAGE_SIZE)
}

pub(crate) fn forbidden(why: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::oauth(ErrorCode::InsufficientScope, why)
}

pub(crate) fn not_found(what: &'static str) -> Error {
    Error::oauth(ErrorCode::NotFound, what)
}

impl Keyport {
    /// The workspace with `slug` and the user's role there; not found for
    /// anyone who is not a member.
    pub async fn membership(&self, user: &User, slug: &str) -> Result<(Workspace, Role)> {
        let ws = store::directory::workspace_by_slug(self.store.pool(), slug)
            .await?
            .ok_or_else(|| not_found("no such workspace"))?;
        let member = store::members::find(self.store.pool(), &ws.id, &user.id).await?;
        match member {
            Some(m) => Ok((ws, m.role)),
            None => Err(not_found("no such workspace")),
        }
    }

    /// The workspace and the caller's role, when that role is at least `min`.
    pub async fn workspace_as(
        &self,
        user: &User,
        slug: &str,
        min: Role,
    ) -> Result<(Workspace, Role)> {
        let (ws, role) = self.membership(user, slug).await?;
        if role < min {
            return Err(forbidden(format!("this needs the {min} role or above")));
        }
        Ok((ws, role))
    }

    /// The user's workspaces and role in each, by slug.
    pub async fn workspaces_of(&self, user: &User) -> Result<Vec<(Workspace, Role)>> {
        let rows = store::directory::memberships_of(self.store.pool(), &user.id).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(ws, role)| Role::parse(&role).map(|r| (ws, r)))
            .collect())
    }

    /// Whether the user may manage the server's clients: a server admin or
    /// the owner of a workspace.
    pub async fn manages_clients(&self, user: &User) -> Result<bool> {
        Ok(user.is_admin
            || self
                .workspaces_of(user)
                .await?
                .iter()
                .any(|(_, role)| *role == Role::Owner))
    }

    /// A page of a workspace's members (admins and owners only).
    pub async fn members(
        &self,
        user: &User,
        slug: &str,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Workspace, Role, Page<Member>)> {
        let (ws, role) = self.workspace_as(user, slug, Role::Admin).await?;
        let limit = page_size(limit);
        let rows = store::members::list(self.store.pool(), &ws.id, after, limit + 1).await?;
        let page = Page::of(rows, limit, |m| m.email.clone());
        Ok((ws, role, page))
    }

    /// Changes a member's role, removes them, or hands them ownership.
    pub async fn manage_member(
        &self,
        user: &User,
        slug: &str,
        target_email: &str,
        action: MemberAction,
        caller: &Caller,
    ) -> Result<()> {
        let (ws, actor) = self.membership(user, slug).await?;
        let target_user =
            store::directory::user_by_email(self.store.pool(), &normalise_username(target_email))
                .await?
                .ok_or_else(|| not_found("no such member"))?;
        let target = store::members::find(self.store.pool(), &ws.id, &target_user.id)
            .await?
            .ok_or_else(|| not_found("no such member"))?;
        let action = match action {
            MemberAction::Remove if target.user_id == user.id => MemberAction::Leave,
            other => other,
        };
        if target.user_id == user.id && action != MemberAction::Leave {
            return Err(forbidden("you cannot change your own role"));
        }
        let owners = store::members::count_owners(self.store.pool(), &ws.id).await?;
        may(actor, target.role, action, owners).map_err(forbidden)?;
        let now = self.clock.now();
        let (actor_id, actor_email, caller) = (user.id.clone(), user.email.clone(), caller.clone());
        let done = self
            .store
            .write(move |c| {
                Box::pin(async move {
                    // Re-checked inside the transaction: two owners demoting
                    // each other at once must not leave the workspace ownerless.
                    let owners = store::members::count_owners(&mut *c, &ws.id).await?;
                    if may(actor, target.role, action, owners).is_err() {
                        return Ok(false);
                    }
                    let (event, detail) = match action {
                        MemberAction::ChangeRole(role) => {
                            store::members::set_role(&mut *c, &ws.id, &target.user_id, role)
                                .await?;
                            (
                                "member.role",
                                serde_json::json!({ "from": target.role, "to": role }),
                            )
                        }
                        MemberAction::TransferOwnership => {
                            store::members::set_role(&mut *c, &ws.id, &target.user_id, Role::Owner)
                                .await?;
                            store::members::set_role(&mut *c, &ws.id, &actor_id, Role::Admin)
                                .await?;
                            (
                                "member.transfer_ownership",
                                serde_json::json!({ "from": actor_email }),
                            )
                        }
                        MemberAction::Remove | MemberAction::Leave => {
                            store::members::remove(&mut *c, &ws.id, &target.user_id).await?;
                            // Their CLI sessions in this workspace end now, not
                            // at their next refresh.
                            // Sessions name their workspace by slug.
                            let ended = store::members::end_sessions_in(
                                &mut *c,
                                &ws.slug,
                                &target.user_id,
                                now,
                            )
                            .await?;
                            let event = match action {
                                MemberAction::Leave => "member.leave",
                                _ => "member.remove",
                            };
                            (event, serde_json::json!({ "sessions_ended": ended }))
                        }
                        MemberAction::Invite(_) => return Ok(false),
                    };
                    Audit::new(event, "success")
                        .actor(Some(&actor_email))
                        .workspace(&ws.id)
                        .target(&target.email)
                        .detail(detail)
                        .record(c, now * 1000, &caller)
                        .await?;
                    Ok(true)
                })
            })
            .await?;
        if !done {
            return Err(forbidden(
                "the workspace changed meanwhile; reload and try again",
            ));
        }
        Ok(())
    }

    /// A page of the user's own live CLI sessions, newest first.
    pub async fn my_sessions(
        &self,
        user: &User,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<ListedSession>> {
        self.session_page(Owner::User(&user.id), after, limit).await
    }

    /// A page of every member's live CLI sessions in a workspace (admins).
    pub async fn workspace_sessions(
        &self,
        user: &User,
        slug: &str,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Workspace, Page<ListedSession>)> {
        let (ws, _) = self.workspace_as(user, slug, Role::Admin).await?;
        let page = self
            .session_page(Owner::Workspace(&ws.slug), after, limit)
            .await?;
        Ok((ws, page))
    }

    async fn session_page(
        &self,
        owner: Owner<'_>,
        after: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Page<ListedSession>> {
        let limit = page_size(limit);
        let rows = store::sessions::page(
            self.store.pool(),
            owner,
            parse_time_cursor(after),
            limit + 1,
        )
        .await?;
        Ok(Page::of(rows, limit, |s| {
            time_cursor(s.session.created_at, &s.session.id)
        }))
    }

    /// Revokes a CLI session: the user's own, or, for an admin of the
    /// session's workspace, any member's. Anything else is not found.
    pub async fn revoke_session_as(&self, user: &User, id: &str, caller: &Caller) -> Result<()> {
        let session = store::sessions::find(self.store.pool(), id)
            .await?
            .filter(|s| s.revoked_at.is_none())
            .ok_or_else(|| not_found("no such session"))?;
        let own = session.user_id.as_deref() == Some(user.id.as_str());
        // A session names its workspace by slug; the audit trail by id.
        let workspace = match session.workspace_id.as_deref() {
            Some(slug) => store::directory::workspace_by_slug(self.store.pool(), slug).await?,
            None => None,
        };
        if !own {
            let Some(ws) = &workspace else {
                return Err(not_found("no such session"));
            };
            let role = store::members::find(self.store.pool(), &ws.id, &user.id)
                .await?
                .map(|m| m.role);
            if role < Some(Role::Admin) {
                return Err(not_found("no such session"));
            }
        }
        let workspace_id = workspace.map(|ws| ws.id);
        let now = self.clock.now();
        let (sid, email, caller) = (session.id.clone(), user.email.clone(), caller.clone());
        let reason = if own { "user" } else { "workspace_admin" };
        self.store
            .write(move |c| {
                Box::pin(async move {
                    if store::sessions::revoke(&mut *c, &sid, reason, now).await? {
                        let mut audit = Audit::new("session.revoke", "success")
                            .actor(Some(&email))
                            .client(&session.client_id)
                            .session(&sid)
                            .target(&sid);
                        if let Some(ws) = &workspace_id {
                            audit = audit.workspace(ws);
                        }
                        audit.record(c, now * 1000, &caller).await?;
                    }
                    Ok(())
                })
            })
            .await?;
        Ok(())
    }

    /// A page of a workspace's audit trail, newest first (admins).
    pub async fn audit_page(
        &self,
        user: &User,
        slug: &str,
        filter: &Filter,
        before: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Workspace, Page<AuditEvent>)> {
        let (ws, _) = self.workspace_as(user, slug, Role::Admin).await?;
        let page = self
            .audit_rows(&ws, filter, before, page_size(limit))
            .await?;
        Ok((ws, page))
    }

    /// One batch of a workspace's events, for pages and streamed exports.
    pub async fn audit_rows(
        &self,
        ws: &Workspace,
        filter: &Filter,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Page<AuditEvent>> {
        self.store.settle_audit().await;
        let rows = store::audit::page(self.store.pool(), &ws.id, filter, before, limit + 1).await?;
        Ok(Page::of(rows, limit, |e| e.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberAction::*;
    use Role::*;

    #[test]
    fn who_may_manage_whom() {
        let table: &[(Role, Role, MemberAction, i64, bool)] = &[
            // Invitations: admins and owners, never above themselves.
            (Admin, Member, Invite(Member), 1, true),
            (Admin, Admin, Invite(Admin), 1, true),
            (Admin, Owner, Invite(Owner), 1, false),
            (Owner, Owner, Invite(Owner), 1, true),
            (Member, Viewer, Invite(Viewer), 1, false),
            (Viewer, Viewer, Invite(Viewer), 1, false),
            // Roles: admins manage those below, up to their own role.
            (Admin, Member, ChangeRole(Viewer), 1, true),
            (Admin, Member, ChangeRole(Admin), 1, true),
            (Admin, Member, ChangeRole(Owner), 1, false),
            (Admin, Admin, ChangeRole(Member), 1, false),
            (Admin, Owner, ChangeRole(Member), 2, false),
            (Owner, Admin, ChangeRole(Viewer), 1, true),
            (Owner, Owner, ChangeRole(Admin), 2, true),
            (Owner, Owner, ChangeRole(Admin), 1, false),
            (Member, Viewer, ChangeRole(Member), 1, false),
            // Removal.
            (Admin, Member, Remove, 1, true),
            (Admin, Admin, Remove, 1, false),
            (Owner, Admin, Remove, 1, true),
            (Owner, Owner, Remove, 2, true),
            (Owner, Owner, Remove, 1, false),
            (Member, Viewer, Remove, 1, false),
            // Leaving: anyone but the last owner.
            (Viewer, Viewer, Leave, 1, true),
            (Owner, Owner, Leave, 2, true),
            (Owner, Owner, Leave, 1, false),
            // Ownership: owners only.
            (Owner, Member, TransferOwnership, 1, true),
            (Admin, Member, TransferOwnership, 1, false),
        ];
        for &(actor, target, action, owners, allowed) in table {
            assert_eq!(
                may(actor, target, action, owners).is_ok(),
                allowed,
                "{actor} doing {action:?} to {target} with {owners} owner(s)"
            );
        }
    }

    #[test]
    fn pages_say_where_the_next_starts() {
        let page = Page::of(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!((page.items, page.next), (vec![1, 2], Some("2".into())));
        let page = Page::of(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(page.next, None);
        assert_eq!(parse_time_cursor(Some("17.abc")), Some((17, "abc")));
        assert_eq!(parse_time_cursor(Some("x.abc")), None);
        assert_eq!(page_size(Some(0)), 1);
        assert_eq!(page_size(Some(10_000)), MAX_PAGE_SIZE);
    }
}
