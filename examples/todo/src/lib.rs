//! The Todo API: each user's todos, behind Keyport's access tokens.
//!
//! - `GET /todos` needs `todos:read`.
//! - `POST /todos` (`{"title": "…"}`) needs `todos:write`.
//! - `GET /me` shows what the token says.
//!
//! Tokens are checked by `keyport_client::resource`. The RFC 9728 document
//! is at `/.well-known/oauth-protected-resource`. Todos live in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use keyport_client::resource::{Bearer, Refusal, ResourceServer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Todo {
    pub id: u64,
    pub title: String,
}

#[derive(Clone)]
struct Api {
    rs: ResourceServer,
    /// Each subject's todos.
    todos: Arc<Mutex<HashMap<String, Vec<Todo>>>>,
}

impl FromRef<Api> for ResourceServer {
    fn from_ref(api: &Api) -> Self {
        api.rs.clone()
    }
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

/// The API's routes, checking tokens with `rs`.
pub fn app(rs: ResourceServer) -> Router {
    let api = Api {
        rs: rs.clone(),
        todos: Arc::default(),
    };
    Router::new()
        .route("/todos", get(list).post(add))
        .route("/me", get(me))
        .with_state(api)
        .merge(rs.metadata_router())
}

async fn list(State(api): State<Api>, Bearer(who): Bearer) -> Result<Json<Vec<Todo>>, Refusal> {
    who.require(&["todos:read"])?;
    let todos = api.todos.lock().expect("todos lock");
    Ok(Json(todos.get(&who.subject).cloned().unwrap_or_default()))
}

async fn add(
    State(api): State<Api>,
    Bearer(who): Bearer,
    Json(new): Json<NewTodo>,
) -> Result<(StatusCode, Json<Value>), Refusal> {
    who.require(&["todos:write"])?;
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 500 {
        let body = json!({"error": "invalid_request", "error_description": "a title of 1 to 500 characters"});
        return Ok((StatusCode::BAD_REQUEST, Json(body)));
    }
    let mut todos = api.todos.lock().expect("todos lock");
    let mine = todos.entry(who.subject).or_default();
    let todo = Todo {
        id: mine.len() as u64 + 1,
        title: title.to_string(),
    };
    mine.push(todo.clone());
    Ok((StatusCode::CREATED, Json(json!(todo))))
}

async fn me(Bearer(who): Bearer) -> Json<Value> {
    Json(json!({
        "sub": who.subject,
        "client_id": who.client_id,
        "scope": who.scopes.join(" "),
        "workspace": who.workspace,
        "role": who.role,
    }))
}
