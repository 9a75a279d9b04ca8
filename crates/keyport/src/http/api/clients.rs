//! `/api/v1/clients`: the server's OAuth clients, listed (never their
//! secrets) and added, by workspace owners.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

use super::json::{AddedClient, ClientPage, ClientView, ErrorBody, NewClient};
use super::{Reply, authorize, json_body, json_reply, page_ask, query};
use crate::service::{Caller, Keyport};

/// The clients stored on this server, by id (owners).
#[utoipa::path(
    get,
    path = "/api/v1/clients",
    tag = "clients",
    security(("bearer" = [])),
    params(super::json::PageParams),
    responses(
        (status = 200, description = "A page of clients, by id", body = ClientPage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "The token lacks workspace:read, or its role is not owner", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn list(State(kp): State<Keyport>, headers: HeaderMap, uri: Uri) -> Reply {
    let authed = authorize(&kp, &headers, "workspace:read").await?;
    let ask = page_ask(&query(&uri)?)?;
    authed.principal.acts_as_owner(&authed.user)?;
    let page = kp
        .clients_page(&authed.user, ask.cursor.as_deref(), ask.limit)
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        ClientPage {
            items: page.items.iter().map(ClientView::from).collect(),
            next_cursor: page.next,
        },
    ))
}

/// Adds a client (owners); a confidential client's secret is in this
/// response only.
#[utoipa::path(
    post,
    path = "/api/v1/clients",
    tag = "clients",
    security(("bearer" = [])),
    request_body = NewClient,
    responses(
        (status = 201, description = "Added", body = AddedClient),
        (status = 400, description = "The body is not JSON of this shape, or the client is not \
                                      valid (invalid_client_metadata)", body = ErrorBody),
        (status = 401, description = "No token, or an invalid one", body = ErrorBody),
        (status = 403, description = "The token lacks workspace:write, or its role is not owner", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub async fn add(
    State(kp): State<Keyport>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let authed = authorize(&kp, &headers, "workspace:write").await?;
    authed.principal.acts_as_owner(&authed.user)?;
    let new: NewClient = json_body(&headers, body).await?;
    let (client, secret) = kp.add_client_as(&authed.user, new.into(), &caller).await?;
    Ok(json_reply(
        StatusCode::CREATED,
        AddedClient {
            client: ClientView::from(&client),
            client_secret: secret.map(|s| s.expose().to_string()),
        },
    ))
}
