//! `todo-api`: the Todo API on 127.0.0.1:4000 (or `TODO_LISTEN`).
//!
//! Environment:
//! - `TODO_ISSUER`: the Keyport issuer (default `http://127.0.0.1:8080`);
//! - `TODO_AUDIENCE`: this API's resource identifier (default
//!   `http://127.0.0.1:4000`), one of the CLI client's audiences;
//! - `TODO_CLIENT_ID` / `TODO_CLIENT_SECRET`: a confidential client for
//!   introspection, so a revoked session is refused within
//!   `TODO_CACHE_SECS` (default 30);
//! - `TODO_LISTEN`: the address to listen on.

use std::time::Duration;

use anyhow::Context;
use keyport_client::resource::ResourceServer;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let issuer = env_or("TODO_ISSUER", "http://127.0.0.1:8080");
    let audience = env_or("TODO_AUDIENCE", "http://127.0.0.1:4000");
    let listen = env_or("TODO_LISTEN", "127.0.0.1:4000");
    let cache_secs: u64 = env_or("TODO_CACHE_SECS", "30")
        .parse()
        .context("TODO_CACHE_SECS is a number of seconds")?;
    let mut builder = ResourceServer::builder(&issuer, &audience)
        .cache_ttl(Duration::from_secs(cache_secs))
        .scopes_supported(&["todos:read", "todos:write"]);
    if let (Ok(id), Ok(secret)) = (
        std::env::var("TODO_CLIENT_ID"),
        std::env::var("TODO_CLIENT_SECRET"),
    ) {
        builder = builder.introspection(&id, &secret).check_revocation(true);
    }
    let rs = builder
        .build()
        .await
        .with_context(|| format!("cannot reach the issuer {issuer}"))?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("todo-api on http://{listen}, trusting {issuer}");
    axum::serve(listener, todo::app(rs)).await?;
    Ok(())
}
