//! The request and response bodies of `/api/v1`, with their OpenAPI
//! schemas. Times are RFC 3339 UTC strings; secrets appear only in the one
//! response that makes them (a new confidential client's `client_secret`).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::Workspace;
use crate::domain::clients::{Client, ClientSpec};
use crate::domain::scopes::Role;
use crate::domain::tokens::rfc3339;
use crate::domain::workspaces::ApiKey;
use crate::domain::workspaces::AuditRow as AuditEvent;
use crate::domain::workspaces::ListedSession;
use crate::domain::workspaces::MemberRow as Member;

/// RFC 6749 §5.2: every error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// `invalid_request`, `invalid_token`, `insufficient_scope`, `not_found`,
    /// `invalid_client_metadata`, `temporarily_unavailable`, …
    pub error: String,
    pub error_description: Option<String>,
}

/// A workspace role, weakest first.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl From<Role> for RoleName {
    fn from(role: Role) -> Self {
        match role {
            Role::Viewer => RoleName::Viewer,
            Role::Member => RoleName::Member,
            Role::Admin => RoleName::Admin,
            Role::Owner => RoleName::Owner,
        }
    }
}

/// `limit` and `cursor`, the query of every list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Rows per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// The audit trail's filters and page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only events by this actor (an email address, or `admin`).
    pub actor: Option<String>,
    /// Only events of this kind, e.g. `session.revoke`.
    pub event: Option<String>,
    /// Only events about this client.
    pub client_id: Option<String>,
    /// Only events at or after this time, in unix seconds.
    #[param(minimum = 0, maximum = 253402300799i64)]
    pub from: Option<i64>,
    /// Only events before this time (exclusive), in unix seconds.
    #[param(minimum = 0, maximum = 253402300799i64)]
    pub to: Option<i64>,
    /// Rows per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// The workspace a token is bound to, and the caller's role there now.
#[derive(Serialize, ToSchema)]
pub struct WorkspaceView {
    pub slug: String,
    pub name: String,
    pub role: RoleName,
}

impl WorkspaceView {
    pub fn new(ws: Workspace, role: Role) -> Self {
        WorkspaceView {
            slug: ws.slug,
            name: ws.name,
            role: role.into(),
        }
    }
}

/// The workspaces a token may act in: the one it is bound to.
#[derive(Serialize, ToSchema)]
pub struct WorkspaceList {
    pub items: Vec<WorkspaceView>,
    /// Always null: there is one page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: RoleName,
    /// RFC 3339.
    pub joined_at: String,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        MemberView {
            user_id: m.user_id,
            email: m.email,
            name: m.name,
            role: m.role.into(),
            joined_at: rfc3339(m.joined_at),
        }
    }
}

/// A live CLI session: one refresh-token family.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    /// The signed-in user's email.
    pub user: Option<String>,
    pub client_id: String,
    pub workspace_id: Option<String>,
    pub role: Option<RoleName>,
    pub scope: String,
    /// The label the CLI gave itself.
    pub label: Option<String>,
    /// What the device reported: `guid`, `dns_name`, `os_type`,
    /// `os_version`, `client_info`.
    #[schema(value_type = Object)]
    pub device: serde_json::Value,
    pub ip: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub last_used_at: String,
}

impl From<ListedSession> for SessionView {
    fn from(listed: ListedSession) -> Self {
        let s = listed.session;
        let device = serde_json::from_str::<serde_json::Value>(&s.metadata)
            .ok()
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::json!({}));
        SessionView {
            id: s.id,
            user: listed.email,
            client_id: s.client_id,
            workspace_id: s.workspace_id,
            role: s.role.map(RoleName::from),
            scope: s.scope,
            label: s.label,
            device,
            ip: s.ip,
            created_at: rfc3339(s.created_at),
            last_used_at: rfc3339(s.last_used_at),
        }
    }
}

/// An API key as its owner sees it later: never the key itself.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// The workspace's slug.
    pub workspace: String,
    pub scope: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; null: it does not expire.
    pub expires_at: Option<String>,
    /// RFC 3339, to the minute.
    pub last_used_at: Option<String>,
    /// RFC 3339.
    pub revoked_at: Option<String>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        ApiKeyView {
            id: k.id,
            name: k.name,
            workspace: k.workspace_slug,
            scope: k.scope,
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventView {
    /// Also the cursor: ids order events in time.
    pub id: String,
    /// RFC 3339, to the millisecond.
    pub at: String,
    pub event: String,
    pub outcome: String,
    pub actor: Option<String>,
    pub client_id: Option<String>,
    pub session_id: Option<String>,
    /// What the event acted on: a member's email, a session or key id.
    pub target: Option<String>,
    pub ip: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.at_ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        AuditEventView {
            id: e.id,
            at,
            event: e.event,
            outcome: e.outcome,
            actor: e.actor,
            client_id: e.client_id,
            session_id: e.session_id,
            target: e.target,
            ip: e.ip,
            detail: e.detail,
        }
    }
}

/// A client's settings; never its secret.
#[derive(Serialize, ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    /// `confidential` or `public`.
    #[serde(rename = "type")]
    pub kind: String,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
    pub default_scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub first_party: bool,
    pub access_token_format: String,
    pub access_token_alg: String,
    pub access_token_prefix: String,
    pub refresh_token_prefix: String,
    /// `admin`, `config`, `dashboard`, `registered` or `metadata`.
    pub source: String,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        ClientView {
            client_id: c.id.as_str().to_string(),
            name: c.name.clone(),
            kind: if c.confidential {
                "confidential"
            } else {
                "public"
            }
            .into(),
            grants: c.grants.iter().map(|g| g.as_str().to_string()).collect(),
            scopes: c.scopes.clone(),
            default_scopes: c.default_scopes.clone(),
            audiences: c.audiences.clone(),
            redirect_uris: c.redirect_uris.clone(),
            first_party: c.first_party,
            access_token_format: c.access_token_format.as_str().into(),
            access_token_alg: c.access_token_alg.as_str().into(),
            access_token_prefix: c.access_token_prefix.clone(),
            refresh_token_prefix: c.refresh_token_prefix.clone(),
            source: c.source.clone(),
        }
    }
}

/// A client just added; a confidential one's secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct AddedClient {
    #[serde(flatten)]
    pub client: ClientView,
    pub client_secret: Option<String>,
}

/// A client to add. Checked as every client is (`ClientSpec::build`);
/// consent cannot be skipped (`first_party`) from here: that is the
/// operator's to decide.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub client_id: String,
    pub name: String,
    #[serde(default)]
    pub confidential: bool,
    /// Grant type names, e.g. `urn:ietf:params:oauth:grant-type:device_code`,
    /// `refresh_token`, `authorization_code`, `client_credentials`.
    #[serde(default)]
    pub grants: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub default_scopes: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// `jwt` (the default) or `opaque`.
    pub access_token_format: Option<String>,
    /// `EdDSA` (the default), `ES256` or `RS256`.
    pub access_token_alg: Option<String>,
    pub access_token_prefix: Option<String>,
    pub refresh_token_prefix: Option<String>,
}

impl From<NewClient> for ClientSpec {
    fn from(n: NewClient) -> Self {
        ClientSpec {
            id: n.client_id,
            name: n.name,
            confidential: n.confidential,
            grants: n.grants,
            scopes: n.scopes,
            default_scopes: n.default_scopes,
            audiences: n.audiences,
            redirect_uris: n.redirect_uris,
            first_party: false,
            access_token_format: n.access_token_format,
            access_token_alg: n.access_token_alg,
            access_token_prefix: n.access_token_prefix,
            refresh_token_prefix: n.refresh_token_prefix,
        }
    }
}

/// An invitation as the browser's form makes it. Through this API it is
/// always refused: invitations are made only in a signed-in browser.
#[derive(Deserialize, ToSchema)]
pub struct NewInvitation {
    pub email: String,
    pub role: RoleName,
}

/// An API key as the browser's form makes it. Through this API it is
/// always refused: keys are made only in a signed-in browser.
#[derive(Deserialize, ToSchema)]
pub struct NewApiKey {
    pub name: String,
    /// The workspace's slug.
    pub workspace: String,
    pub scopes: Vec<String>,
    /// 1 to 3650; null: it does not expire.
    pub expires_in_days: Option<i64>,
}

macro_rules! page_type {
    ($name:ident, $item:ty) => {
        /// One page of a list; `next_cursor` is null on the last.
        #[derive(Serialize, ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            pub next_cursor: Option<String>,
        }
    };
}

page_type!(MemberPage, MemberView);
page_type!(SessionPage, SessionView);
page_type!(ApiKeyPage, ApiKeyView);
page_type!(AuditPage, AuditEventView);
page_type!(ClientPage, ClientView);
