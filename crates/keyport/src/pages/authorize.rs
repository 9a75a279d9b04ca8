//! `GET` and `POST /oauth/authorize` (RFC 6749 §4.1.1–4.1.2): sign in on
//! the hosted page, pick a workspace, consent (skipped for first-party
//! clients), then back to the client with `code`, `state` and `iss`.
//! Nothing about the request is kept between pages: each step carries the
//! request's parameters and checks them again.

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::device::{SignInPage, current_user};
use super::{Csrf, checked_form, csrf_for, error_page, message, page};
use crate::domain::authorize::{
    AuthorizeParams, AuthorizeRequest, Redirect, Refusal, WorkspaceChoice, choose_workspace,
};
use crate::domain::scopes::Role;
use crate::http::params::{Params, parse_query};
use crate::service::{Caller, Keyport};
use keyport_proto::ErrorCode;

#[derive(Template)]
#[template(path = "authorize_consent.html")]
struct ConsentPage<'a> {
    client_name: &'a str,
    email: &'a str,
    metadata_url: Option<&'a str>,
    redirect_host: String,
    workspace: Option<String>,
    workspace_slug: Option<String>,
    role: Option<String>,
    resource: Option<&'a str>,
    /// (scope, description, granted)
    scopes: Vec<(String, String, bool)>,
    fields: Vec<(&'static str, String)>,
    csrf: &'a str,
}

/// The request's parameters as hidden form fields, for the next step.
fn carried(p: &AuthorizeParams) -> Vec<(&'static str, String)> {
    [
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("state", &p.state),
        ("scope", &p.scope),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
        ("nonce", &p.nonce),
        ("prompt", &p.prompt),
        ("resource", &p.resource),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value.clone()?)))
    .collect()
}

/// This request as a URL on this server, to come back to after sign-in.
/// `prompt=login` is dropped: the sign-in it asks for is the one happening.
fn return_path(p: &AuthorizeParams) -> String {
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in carried(p) {
        if name == "prompt" {
            let kept: Vec<&str> = value.split_whitespace().filter(|v| *v != "login").collect();
            if !kept.is_empty() {
                url.append_pair(name, &kept.join(" "));
            }
        } else {
            url.append_pair(name, &value);
        }
    }
    format!("/oauth/authorize?{}", url.finish())
}

/// The pages of this flow may end in a redirect to the client (after a
/// form is posted), so their CSP's `form-action` admits its redirect URI.
fn allow_redirect(mut response: Response, redirect_uri: &str) -> Response {
    let target = match url::Url::parse(redirect_uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url.origin().ascii_serialization(),
        Ok(url) => format!("{}:", url.scheme()),
        Err(_) => return response,
    };
    // A CSP source: never anything that could end it or add a directive.
    let safe = target
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:/[]".contains(&b));
    if !safe {
        return response;
    }
    let csp = super::csp_with_form_action(&target);
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

fn redirect_to(kp: &Keyport, redirect: &Redirect) -> Response {
    let url = redirect.url(&kp.config.issuer);
    match HeaderValue::from_str(&url) {
        Ok(location) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => refused_page("The redirect URI cannot be used."),
    }
}

/// A refusal before the user acted (`prompt=none`), where the domain says
/// it goes.
fn refuse_unattended(
    kp: &Keyport,
    request: &AuthorizeRequest,
    code: ErrorCode,
    why: &'static str,
) -> Response {
    respond(kp, request.refuse_unattended(code, why))
}

fn respond(kp: &Keyport, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(why) => refused_page(why),
        Refusal::Redirect(redirect) => redirect_to(kp, &redirect),
    }
}

fn refused_page(why: &str) -> Response {
    message(
        StatusCode::BAD_REQUEST,
        "Authorization request refused",
        vec![
            why.to_string(),
            "Nothing was sent back to the application. Tell its developers.".into(),
        ],
    )
}

/// Checks the request; a refusal is already the response.
async fn checked(kp: &Keyport, p: &AuthorizeParams) -> Result<AuthorizeRequest, Response> {
    match kp.authorization_request(p).await {
        Ok(Ok(request)) => Ok(request),
        Ok(Err(refusal)) => Err(respond(kp, refusal)),
        Err(e) => Err(error_page(&e)),
    }
}

/// `GET /oauth/authorize`.
pub async fn authorize(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // Parsed as strictly as a form: a repeated parameter is refused
    // (RFC 6749 §3.1), on a page since nothing is checked yet.
    let Ok(query) = parse_query(query.as_deref().unwrap_or("")) else {
        return refused_page("The request repeats a parameter or is not valid UTF-8.");
    };
    let p = &params_of(&query);
    let request = match checked(&kp, p).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let uri = request.redirect_uri.clone();
    let response = step(&kp, &caller, &headers, &request, p, query.get("workspace")).await;
    allow_redirect(response, &uri)
}

/// What the user sees next: sign-in, workspace choice, consent, or (with
/// nothing to ask) the redirect with a code.
async fn step(
    kp: &Keyport,
    caller: &Caller,
    headers: &HeaderMap,
    request: &AuthorizeRequest,
    p: &AuthorizeParams,
    workspace: Option<&str>,
) -> Response {
    let csrf = csrf_for(kp, headers);
    let signed_in = match current_user(kp, headers).await {
        Ok(signed_in) => signed_in,
        Err(e) => return error_page(&e),
    };
    let prompt = request.prompt;
    let Some((user, auth_time, _)) = signed_in.filter(|_| !prompt.login) else {
        if prompt.none {
            return refuse_unattended(
                kp,
                request,
                ErrorCode::LoginRequired,
                "no user is signed in",
            );
        }
        return sign_in(&csrf, request, p);
    };
    let memberships = match kp.memberships(&user).await {
        Ok(m) => m,
        Err(e) => return error_page(&e),
    };
    let chosen = match choose_workspace(&memberships, workspace) {
        Ok(chosen) => chosen,
        Err(e) => return error_page(&e),
    };
    let chosen = match chosen {
        WorkspaceChoice::Ask if prompt.none => {
            return refuse_unattended(
                kp,
                request,
                ErrorCode::InteractionRequired,
                "the user must choose a workspace",
            );
        }
        WorkspaceChoice::Ask => {
            let html = super::WorkspacePage {
                action: "/oauth/authorize",
                client_name: &request.client.name,
                user_code: None,
                fields: carried(p),
                workspaces: memberships
                    .iter()
                    .map(|(ws, role)| (ws.slug.clone(), ws.name.clone(), role.clone()))
                    .collect(),
            };
            return page(StatusCode::OK, html.render(), Some(&csrf));
        }
        WorkspaceChoice::NoWorkspace => None,
        WorkspaceChoice::Chosen(ws, role) => Some((ws, role)),
    };
    let consent_needed = !request.client.first_party || prompt.consent;
    if !consent_needed {
        let slug = chosen.map(|(ws, _)| ws.slug.as_str());
        return match kp.issue_code(request, &user, slug, auth_time, caller).await {
            Ok(redirect) => redirect_to(kp, &redirect),
            Err(e) => error_page(&e),
        };
    }
    if prompt.none {
        return refuse_unattended(
            kp,
            request,
            ErrorCode::ConsentRequired,
            "the user has not approved this application",
        );
    }
    let role: Option<Role> = chosen.and_then(|(_, role)| role);
    let scopes = kp.catalogue.review(&request.scope, role);
    let html = ConsentPage {
        client_name: &request.client.name,
        email: &user.email,
        metadata_url: (request.client.source == "metadata").then_some(request.client.id.as_str()),
        redirect_host: redirect_host(&request.redirect_uri),
        workspace: chosen.map(|(ws, _)| ws.name.clone()),
        workspace_slug: chosen.map(|(ws, _)| ws.slug.clone()),
        role: role.map(|r| r.to_string()),
        resource: request.resource.as_deref(),
        scopes,
        fields: carried(p),
        csrf: &csrf.token,
    };
    page(StatusCode::OK, html.render(), Some(&csrf))
}

/// What the consent page names as the place the user returns to.
fn redirect_host(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(url) => match url.host_str() {
            Some(host) => match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            },
            None => format!("{}:", url.scheme()),
        },
        Err(_) => uri.to_string(),
    }
}

fn sign_in(csrf: &Csrf, request: &AuthorizeRequest, p: &AuthorizeParams) -> Response {
    let html = SignInPage {
        action: "/signin",
        csrf: &csrf.token,
        user_code: None,
        next: Some(return_path(p)),
        client_name: Some(&request.client.name),
        email: "",
        error: None,
    };
    page(StatusCode::OK, html.render(), Some(csrf))
}

/// `POST /oauth/authorize`: the consent page's Approve or Deny.
pub async fn decide(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match checked_form(&kp, &headers, body).await {
        Ok(form) => form,
        Err(page) => return page,
    };
    let p = params_of(&form);
    let request = match checked(&kp, &p).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let signed_in = match current_user(&kp, &headers).await {
        Ok(signed_in) => signed_in,
        Err(e) => return error_page(&e),
    };
    let Some((user, auth_time, _)) = signed_in else {
        let csrf = csrf_for(&kp, &headers);
        return allow_redirect(sign_in(&csrf, &request, &p), &request.redirect_uri);
    };
    let outcome = match form.get("decision") {
        Some("approve") => {
            kp.issue_code(&request, &user, form.get("workspace"), auth_time, &caller)
                .await
        }
        Some("deny") => kp.deny_authorization(&request, &user, &caller).await,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                vec!["Choose Approve or Deny.".into()],
            );
        }
    };
    match outcome {
        Ok(redirect) => redirect_to(&kp, &redirect),
        Err(e) => error_page(&e),
    }
}

fn params_of(form: &Params) -> AuthorizeParams {
    let get = |name: &str| form.get(name).map(str::to_string);
    AuthorizeParams {
        response_type: get("response_type"),
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        state: get("state"),
        scope: get("scope"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        nonce: get("nonce"),
        prompt: get("prompt"),
        resource: get("resource"),
    }
}

/// `GET /signin?next=…`: the sign-in page on its own.
pub async fn sign_in_page(
    State(kp): State<Keyport>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(query) = parse_query(query.as_deref().unwrap_or("")) else {
        return refused_page("The request repeats a parameter or is not valid UTF-8.");
    };
    let csrf = csrf_for(&kp, &headers);
    let html = SignInPage {
        action: "/signin",
        csrf: &csrf.token,
        user_code: None,
        next: query
            .get("next")
            .filter(|n| super::is_local_path(n))
            .map(str::to_string),
        client_name: None,
        email: "",
        error: None,
    };
    page(StatusCode::OK, html.render(), Some(&csrf))
}
