//! `/dashboard/workspaces/{slug}/members` (admins): members and roles,
//! "Invite" (a link shown once and mailed, bound to one address), "Change
//! role", "Remove", "Make owner" and "Leave workspace"; and
//! `/invitations/{token}`, where the invited person accepts ("Accept"),
//! making an account first when they have none.

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::{Answer, Nav, Visit, bad_form, query_of, refused, signed_in, signed_in_form, when};
use crate::crypto::tokens::Password;
use crate::domain::invitations::NewLink;
use crate::domain::scopes::Role;
use crate::domain::workspaces::MemberAction;
use crate::domain::{Error, ErrorCode};
use crate::pages::device::{current_user, url_encode};
use crate::pages::{checked_form, csrf_for, page};
use crate::service::{Caller, Keyport};

pub struct MemberRow {
    pub name: String,
    pub email: String,
    pub role: String,
    /// Each role offered and whether it is the member's.
    pub options: Vec<(&'static str, bool)>,
    pub joined: String,
    pub me: bool,
}

#[derive(Template)]
#[template(path = "dashboard/members.html")]
struct MembersPage<'a> {
    nav: &'a Nav,
    csrf: &'a str,
    slug: &'a str,
    workspace: &'a str,
    my_role: Role,
    owner: bool,
    /// The roles this admin may hand out, the invitation's default marked.
    roles: Vec<(&'static str, bool)>,
    members: Vec<MemberRow>,
    next: Option<String>,
    /// (email, role, invited by, expires)
    pending: Vec<(String, String, String, String)>,
    invitation_link: Option<&'a str>,
    invited: &'a str,
    mailed: bool,
    notice: Option<&'a str>,
    error: Option<String>,
}

/// What a members page shows besides the list.
#[derive(Default)]
struct Outcome<'a> {
    link: Option<(&'a NewLink, &'a str)>,
    notice: Option<&'a str>,
    error: Option<String>,
}

async fn render(
    v: &Visit<'_>,
    slug: &str,
    after: Option<&str>,
    status: StatusCode,
    outcome: Outcome<'_>,
) -> Answer {
    let (kp, user) = (v.kp, &v.user);
    let (ws, my_role, members) = kp
        .members(user, slug, after, None)
        .await
        .map_err(|e| refused(&e))?;
    let pending = kp.pending_invitations(&ws).await.map_err(|e| refused(&e))?;
    let csrf = v.csrf();
    let offered: Vec<Role> = [Role::Viewer, Role::Member, Role::Admin, Role::Owner]
        .into_iter()
        .filter(|r| *r <= my_role)
        .collect();
    let options = |of: Role| -> Vec<(&'static str, bool)> {
        offered.iter().map(|r| (r.as_str(), *r == of)).collect()
    };
    let roles = options(Role::Member);
    let html = MembersPage {
        nav: &v.nav,
        csrf: &csrf.token,
        slug: &ws.slug,
        workspace: &ws.name,
        my_role,
        owner: my_role == Role::Owner,
        roles,
        members: members
            .items
            .into_iter()
            .map(|m| MemberRow {
                me: m.user_id == user.id,
                options: options(m.role),
                name: m.name.unwrap_or_default(),
                email: m.email,
                role: m.role.to_string(),
                joined: when(m.joined_at),
            })
            .collect(),
        next: members.next,
        pending: pending
            .into_iter()
            .map(|i| {
                (
                    i.email,
                    i.role.to_string(),
                    i.invited_by,
                    when(i.expires_at),
                )
            })
            .collect(),
        invitation_link: outcome.link.map(|(l, _)| l.url.as_str()),
        invited: outcome.link.map(|(_, email)| email).unwrap_or(""),
        mailed: outcome.link.is_some_and(|(l, _)| l.mailed),
        notice: outcome.notice,
        error: outcome.error,
    };
    Ok(page(status, html.render(), Some(&csrf)))
}

/// `GET /dashboard/workspaces/{slug}/members`.
pub async fn list(
    State(kp): State<Keyport>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
) -> Answer {
    let v = signed_in(&kp, &headers, &uri).await?;
    let query = query_of(&uri);
    render(
        &v,
        &slug,
        query.get("after"),
        StatusCode::OK,
        Outcome::default(),
    )
    .await
}

/// The page again after a refusal it can explain beside the list (with
/// `status`); any other refusal is a page of its own.
async fn explain(v: &Visit<'_>, slug: &str, status: StatusCode, e: Error) -> Answer {
    match e {
        Error::OAuth { code, description } if !matches!(code, ErrorCode::NotFound) => {
            let outcome = Outcome {
                error: Some(format!("Nothing changed: {description}.")),
                ..Outcome::default()
            };
            render(v, slug, None, status, outcome).await
        }
        e => Err(refused(&e)),
    }
}

/// `POST /dashboard/workspaces/{slug}/invitations`.
pub async fn invite(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    body: Body,
) -> Answer {
    let (form, v) = signed_in_form(&kp, &headers, &uri, body).await?;
    let Some(role) = form.get("role").and_then(Role::parse) else {
        return Err(bad_form("Choose a role from the list."));
    };
    let email = form.get("email").unwrap_or("").trim().to_lowercase();
    match kp.invite(&v.user, &slug, &email, role, &caller).await {
        Ok(link) => {
            let outcome = Outcome {
                link: Some((&link, &email)),
                ..Outcome::default()
            };
            render(&v, &slug, None, StatusCode::OK, outcome).await
        }
        Err(e) => explain(&v, &slug, StatusCode::BAD_REQUEST, e).await,
    }
}

/// `POST /dashboard/workspaces/{slug}/members/{role|remove|transfer}` and
/// `POST /dashboard/workspaces/{slug}/leave`.
pub async fn manage(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Path((slug, what)): Path<(String, String)>,
    body: Body,
) -> Answer {
    let (form, v) = signed_in_form(&kp, &headers, &uri, body).await?;
    let (action, target, notice) = match what.as_str() {
        "role" => match form.get("role").and_then(Role::parse) {
            Some(role) => (
                MemberAction::ChangeRole(role),
                form.get("email"),
                "The role is changed.",
            ),
            None => return Err(bad_form("Choose a role from the list.")),
        },
        "remove" => (
            MemberAction::Remove,
            form.get("email"),
            "The member is removed.",
        ),
        "transfer" => (
            MemberAction::TransferOwnership,
            form.get("email"),
            "Ownership is handed over; you are now an admin.",
        ),
        "leave" => (MemberAction::Leave, Some(v.user.email.as_str()), ""),
        _ => return Err(bad_form("No such action.")),
    };
    let Some(target) = target.map(str::to_string) else {
        return Err(bad_form("Choose a member."));
    };
    if let Err(e) = kp
        .manage_member(&v.user, &slug, &target, action, &caller)
        .await
    {
        return explain(&v, &slug, StatusCode::FORBIDDEN, e).await;
    }
    let still_admin = kp.workspace_as(&v.user, &slug, Role::Admin).await.is_ok();
    if action == MemberAction::Leave || !still_admin {
        return Ok(Redirect::to("/dashboard/sessions").into_response());
    }
    let outcome = Outcome {
        notice: Some(notice),
        ..Outcome::default()
    };
    render(&v, &slug, None, StatusCode::OK, outcome).await
}

/// `POST /dashboard/workspaces/{slug}/leave`.
pub async fn leave(
    kp: State<Keyport>,
    caller: Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    body: Body,
) -> Answer {
    manage(kp, caller, headers, uri, Path((slug, "leave".into())), body).await
}

#[derive(Template)]
#[template(path = "dashboard/invitation.html")]
struct InvitationPage<'a> {
    csrf: &'a str,
    token: &'a str,
    workspace: &'a str,
    email: &'a str,
    role: Role,
    invited_by: &'a str,
    new_account: bool,
    signed_in_as: Option<&'a str>,
    error: Option<String>,
}

/// `GET /invitations/{token}`.
pub async fn invitation(
    State(kp): State<Keyport>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    invitation_page(&kp, &headers, &token, StatusCode::OK, None).await
}

async fn invitation_page(
    kp: &Keyport,
    headers: &HeaderMap,
    token: &str,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let view = match kp.invitation(token).await {
        Ok(Some(view)) => view,
        Ok(None) => {
            return refused(&crate::domain::workspaces::not_found(
                "this invitation has expired or was already used",
            ));
        }
        Err(e) => return refused(&e),
    };
    let signed_in = match current_user(kp, headers).await {
        Ok(found) => found.map(|(user, _, _)| user),
        Err(e) => return refused(&e),
    };
    let i = &view.invitation;
    if signed_in.is_none() && view.account_exists {
        let next = format!("/invitations/{token}");
        return Redirect::to(&format!("/signin?next={}", url_encode(&next))).into_response();
    }
    let other = signed_in
        .as_ref()
        .filter(|u| u.email != i.email)
        .map(|u| u.email.as_str());
    let csrf = csrf_for(kp, headers);
    let html = InvitationPage {
        csrf: &csrf.token,
        token,
        workspace: &i.workspace.name,
        email: &i.email,
        role: i.role,
        invited_by: &i.invited_by,
        new_account: signed_in.is_none(),
        signed_in_as: other,
        error,
    };
    page(status, html.render(), Some(&csrf))
}

/// `POST /invitations/{token}`: "Accept".
pub async fn accept(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(token): Path<String>,
    body: Body,
) -> Response {
    let form = match checked_form(&kp, &headers, body).await {
        Ok(form) => form,
        Err(page) => return page,
    };
    let signed_in = match current_user(&kp, &headers).await {
        Ok(found) => found.map(|(user, _, _)| user),
        Err(e) => return refused(&e),
    };
    let joined = match &signed_in {
        Some(user) => kp.accept_invitation(user, &token, &caller).await,
        None => {
            let password = Password::new(form.get("password").unwrap_or("").to_string());
            kp.accept_invitation_new_account(&token, form.get("name"), &password, &caller)
                .await
        }
    };
    match joined {
        Ok(_) if signed_in.is_some() => Redirect::to("/dashboard/sessions").into_response(),
        // A new account signs in the usual way (and with its second step
        // once it has one).
        Ok(_) => Redirect::to("/signin?next=%2Fdashboard%2Fsessions").into_response(),
        Err(Error::OAuth {
            code: ErrorCode::InvalidRequest,
            description,
        }) => {
            let error = Some(format!("{description}."));
            invitation_page(&kp, &headers, &token, StatusCode::BAD_REQUEST, error).await
        }
        Err(e) => refused(&e),
    }
}
