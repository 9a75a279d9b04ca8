//! The axum extractor.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};

use super::{Principal, Refusal, ResourceServer};

/// The axum extractor: the request's verified bearer token, or the
/// refusal as the response. Needs a [`ResourceServer`] in the state.
#[derive(Debug, Clone)]
pub struct Bearer(pub Principal);

impl<S> FromRequestParts<S> for Bearer
where
    ResourceServer: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        let rs = ResourceServer::from_ref(state);
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let (first, second) = (values.next(), values.next());
        let token = match (first, second) {
            (None, _) => {
                return Err(rs.refusal(Refusal {
                    status: StatusCode::UNAUTHORIZED,
                    error: None,
                    description: "a bearer token is needed".into(),
                    scope: None,
                    resource_metadata: None,
                }));
            }
            (Some(value), None) => value
                .to_str()
                .ok()
                .and_then(|v| {
                    let (scheme, token) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .filter(|t| !t.is_empty()),
            (Some(_), Some(_)) => None,
        };
        let Some(token) = token else {
            return Err(rs.refusal(Refusal {
                status: StatusCode::BAD_REQUEST,
                error: Some("invalid_request"),
                description: "send one Authorization: Bearer header".into(),
                scope: None,
                resource_metadata: None,
            }));
        };
        rs.verify(token)
            .await
            .map(Bearer)
            .map_err(|refusal| rs.refusal(refusal))
    }
}
