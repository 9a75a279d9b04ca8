//! Invitations by link: made by a workspace's admins, bound to one email
//! address, mailed, and accepted once within seven days, by a signed-in
//! user with that address or by someone who makes their account on the
//! link's page. The token is kept only as a hash.

use super::audit::Audit;
use super::scopes::Role;
use super::signin::{check_new_password, hash_password, normalise_username};
use super::workspaces::{MemberAction, forbidden, may, not_found};
use super::{Error, Result, User, Workspace};
use crate::crypto::{self, hash_secret};
use crate::service::{Caller, Keyport};
use crate::store;
use crate::store::directory::NewUser;
use crate::store::members::{Invitation, NewInvitation};

/// How long an invitation link works.
pub const INVITATION_SECS: i64 = 7 * 24 * 3600;

/// A freshly made invitation: the link is shown once and mailed.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub invitation_id: String,
    pub url: String,
    pub mailed: bool,
}

/// What an invitation link leads to, for the page that accepts it.
#[derive(Debug, Clone)]
pub struct InvitationView {
    pub invitation: Invitation,
    /// Whether an account with the invited address exists.
    pub account_exists: bool,
}

impl Keyport {
    pub async fn pending_invitations(&self, ws: &Workspace) -> Result<Vec<Invitation>> {
        Ok(
            store::members::pending_invitations(self.store.pool(), &ws.id, self.clock.now())
                .await?,
        )
    }

    /// Invites `email` to the workspace with `role`: a link, shown once to
    /// the inviter and mailed to the address, that only that address can
    /// accept, once, within seven days.
    pub async fn invite(
        &self,
        user: &User,
        slug: &str,
        email: &str,
        role: Role,
        caller: &Caller,
    ) -> Result<NewLink> {
        let (ws, actor) = self.workspace_as(user, slug, Role::Admin).await?;
        may(actor, role, MemberAction::Invite(role), 0).map_err(forbidden)?;
        let email = normalise_username(email);
        if !email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace) {
            return Err(Error::invalid_request("enter an email address"));
        }
        let token = crypto::tokens::new_invitation_token();
        let (id, now) = (crypto::random_id(), self.clock.now());
        let (ws_id, hash, inviter, invited, caller2) = (
            ws.id.clone(),
            token.hash(),
            user.email.clone(),
            email.clone(),
            caller.clone(),
        );
        let id2 = id.clone();
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::members::insert_invitation(
                        &mut *c,
                        NewInvitation {
                            id: &id2,
                            hash: &hash,
                            workspace_id: &ws_id,
                            email: &invited,
                            role,
                            invited_by: &inviter,
                            created_at: now,
                            expires_at: now + INVITATION_SECS,
                        },
                    )
                    .await?;
                    Audit::new("member.invite", "success")
                        .actor(Some(&inviter))
                        .workspace(&ws_id)
                        .target(&invited)
                        .detail(serde_json::json!({ "role": role, "invitation": id2 }))
                        .record(c, now * 1000, &caller2)
                        .await
                })
            })
            .await?;
        let url = format!("{}/invitations/{}", self.config.issuer, token.expose());
        let body = format!(
            "{} invited you to the workspace {} on Keyport as {role}.\n\n\
             Accept the invitation within seven days:\n{url}\n",
            user.email, ws.name
        );
        let mailed = match self
            .outbound
            .send_email(&email, &format!("Join {} on Keyport", ws.name), &body)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "an invitation could not be mailed");
                false
            }
        };
        Ok(NewLink {
            invitation_id: id,
            url,
            mailed,
        })
    }

    /// The invitation a link names, while it can still be accepted.
    pub async fn invitation(&self, token: &str) -> Result<Option<InvitationView>> {
        let found = store::members::invitation_by_hash(self.store.pool(), &hash_secret(token))
            .await?
            .filter(|i| i.accepted_at.is_none() && i.expires_at > self.clock.now());
        let Some(invitation) = found else {
            return Ok(None);
        };
        let account_exists = store::directory::user_by_email(self.store.pool(), &invitation.email)
            .await?
            .is_some();
        Ok(Some(InvitationView {
            invitation,
            account_exists,
        }))
    }

    /// A signed-in user accepts an invitation made out to their address.
    pub async fn accept_invitation(
        &self,
        user: &User,
        token: &str,
        caller: &Caller,
    ) -> Result<Workspace> {
        let view = self
            .invitation(token)
            .await?
            .ok_or_else(|| not_found("this invitation has expired or was already used"))?;
        if view.invitation.email != normalise_username(&user.email) {
            return Err(forbidden(
                "this invitation is for another email address; sign in with that one",
            ));
        }
        self.join(
            view.invitation,
            user.id.clone(),
            user.email.clone(),
            None,
            caller,
        )
        .await
    }

    /// Someone without an account accepts: the account is made with the
    /// invited address, the name and the password given, and joins.
    pub async fn accept_invitation_new_account(
        &self,
        token: &str,
        name: Option<&str>,
        password: &crate::crypto::tokens::Password,
        caller: &Caller,
    ) -> Result<Workspace> {
        let view = self
            .invitation(token)
            .await?
            .ok_or_else(|| not_found("this invitation has expired or was already used"))?;
        if view.account_exists {
            return Err(Error::invalid_request(
                "an account with this address exists; sign in to accept",
            ));
        }
        check_new_password(password.expose()).map_err(Error::invalid_request)?;
        let secret = password.clone();
        let phc = self
            .password_work(move || hash_password(secret.expose()))
            .await??;
        let name = name
            .and_then(super::metadata::clean_device_text)
            .filter(|n| !n.is_empty());
        let new_account = NewAccount {
            phc,
            name: name.clone(),
        };
        let email = view.invitation.email.clone();
        self.join(
            view.invitation,
            crypto::random_id(),
            email,
            Some(new_account),
            caller,
        )
        .await
    }

    /// Spends the invitation and adds the membership in one transaction;
    /// makes the account first when there is none.
    async fn join(
        &self,
        invitation: Invitation,
        user_id: String,
        email: String,
        account: Option<NewAccount>,
        caller: &Caller,
    ) -> Result<Workspace> {
        let now = self.clock.now();
        let caller = caller.clone();
        let ws = invitation.workspace.clone();
        let joined = self
            .store
            .write(move |c| {
                Box::pin(async move {
                    if let Some(account) = &account {
                        store::directory::insert_user(
                            &mut *c,
                            NewUser {
                                id: &user_id,
                                email: &email,
                                name: account.name.as_deref(),
                                password_hash: &account.phc,
                                is_admin: false,
                                now,
                            },
                        )
                        .await?;
                    }
                    if !store::members::accept_invitation(&mut *c, &invitation.id, &user_id, now)
                        .await?
                    {
                        return Ok(false);
                    }
                    // An invitation never lowers a role the member already has.
                    let current = store::members::find(&mut *c, &invitation.workspace.id, &user_id)
                        .await?
                        .map(|m| m.role);
                    let role = current.map_or(invitation.role, |r| r.max(invitation.role));
                    store::directory::upsert_membership(
                        &mut *c,
                        &invitation.workspace.id,
                        &user_id,
                        role.as_str(),
                        now,
                    )
                    .await?;
                    Audit::new("member.join", "success")
                        .actor(Some(&email))
                        .workspace(&invitation.workspace.id)
                        .target(&email)
                        .detail(serde_json::json!({
                            "role": role,
                            "invitation": invitation.id,
                            "new_account": account.is_some(),
                        }))
                        .record(c, now * 1000, &caller)
                        .await?;
                    Ok(true)
                })
            })
            .await
            .map_err(|e| {
                if e.is_unique_violation() {
                    Error::invalid_request("an account with this address exists; sign in to accept")
                } else {
                    e.into()
                }
            })?;
        if !joined {
            return Err(not_found("this invitation has expired or was already used"));
        }
        Ok(ws)
    }
}

struct NewAccount {
    phc: String,
    name: Option<String>,
}
