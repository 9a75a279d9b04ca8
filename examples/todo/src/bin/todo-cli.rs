//! `todo-cli`: the Todo API from the terminal, logged in through Keyport's
//! device flow with `keyport-client`.
//!
//! ```sh
//! todo-cli login                 # prints a code and a URL; approve in the browser
//! todo-cli whoami
//! todo-cli add "Ship device OAuth"
//! todo-cli list
//! todo-cli logout
//! ```
//!
//! Tokens are kept as `kp` keeps them: a 0600 `credentials.json` in the
//! user's config dir (`~/.config/todo-cli`, or `TODO_CLI_CONFIG_DIR`), never
//! the working directory, refreshed when they are about to expire. Exit
//! codes: 0 ok, 1 error, 2 usage, 4 not logged in (or the session was
//! revoked or has expired).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use keyport_client::{
    DeviceLoginRequest, DeviceMetadata, FileStore, Issuer, PollOptions, Session, TokenStore,
};
use serde::Deserialize;

const CLIENT_ID: &str = "todo-cli";
const SCOPES: &[&str] = &[
    "openid",
    "email",
    "offline_access",
    "todos:read",
    "todos:write",
];

#[derive(Parser)]
#[command(name = "todo-cli", about = "Your todos, from the terminal")]
struct Cli {
    /// The Keyport issuer
    #[arg(
        long,
        env = "TODO_ISSUER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    issuer: String,
    /// The Todo API
    #[arg(
        long,
        env = "TODO_API",
        default_value = "http://127.0.0.1:4000",
        global = true
    )]
    api: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in through the browser (RFC 8628 device flow)
    Login,
    /// Who the stored login is
    Whoami,
    /// Add a todo
    Add { title: String },
    /// List your todos
    List,
    /// Revoke the login at the issuer and forget it
    Logout,
}

#[derive(Deserialize)]
struct Todo {
    id: u64,
    title: String,
}

/// Not logged in, or the login no longer works: exit 4.
#[derive(Debug)]
struct LoggedOut(String);

impl std::fmt::Display for LoggedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; run `todo-cli login`", self.0)
    }
}

impl std::error::Error for LoggedOut {}

fn store() -> anyhow::Result<Arc<dyn TokenStore>> {
    Ok(Arc::new(FileStore::in_config_dir(
        "todo-cli",
        Some("TODO_CLI_CONFIG_DIR"),
    )?))
}

fn session(cli: &Cli) -> anyhow::Result<Session> {
    Session::open(store()?, Some(&cli.issuer)).map_err(logged_out)
}

fn logged_out(e: keyport_client::Error) -> anyhow::Error {
    match e {
        keyport_client::Error::NotLoggedIn => LoggedOut("not logged in".into()).into(),
        keyport_client::Error::SessionExpired => {
            LoggedOut("the login has expired or was revoked".into()).into()
        }
        e => e.into(),
    }
}

async fn login(cli: &Cli) -> anyhow::Result<()> {
    let issuer = Issuer::discover(&cli.issuer).await?;
    let login = issuer
        .start_device_login(&DeviceLoginRequest {
            client_id: CLIENT_ID.into(),
            scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
            resource: Some(cli.api.clone()),
            device: DeviceMetadata::detect(),
        })
        .await?;
    eprintln!("First copy your one-time code: {}", login.user_code());
    let url = login
        .verification_uri_complete()
        .unwrap_or(login.verification_uri());
    eprintln!("Then open this URL in your web browser: {url}");
    let credentials = login.poll(&PollOptions::default()).await?;
    let session = Session::login(store()?, credentials).await?;
    let me = session.userinfo().await?;
    eprintln!(
        "Logged in as {}",
        me.email.as_deref().unwrap_or(me.sub.as_str())
    );
    Ok(())
}

/// A request to the Todo API with the login's access token; a 401 means
/// the login no longer works.
async fn call(
    cli: &Cli,
    request: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> anyhow::Result<reqwest::Response> {
    let session = session(cli)?;
    let token = session.access_token().await.map_err(logged_out)?;
    let http = reqwest::Client::new();
    let response = request(&http, &cli.api)
        .bearer_auth(token.secret())
        .send()
        .await
        .with_context(|| format!("cannot reach the Todo API at {}", cli.api))?;
    match response.status() {
        reqwest::StatusCode::UNAUTHORIZED => {
            Err(LoggedOut("the Todo API refused the login (revoked or expired)".into()).into())
        }
        status if !status.is_success() => {
            let body = response.text().await.unwrap_or_default();
            Err(anyhow!("the Todo API answered {status}: {body}"))
        }
        _ => Ok(response),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Login => login(&cli).await,
        Command::Whoami => {
            let me = session(&cli)?.userinfo().await.map_err(logged_out)?;
            println!("{}", me.email.as_deref().unwrap_or(me.sub.as_str()));
            Ok(())
        }
        Command::Add { title } => {
            let body = serde_json::json!({ "title": title });
            let todo: Todo = call(&cli, |http, api| {
                http.post(format!("{api}/todos")).json(&body)
            })
            .await?
            .json()
            .await?;
            eprintln!("Added #{}", todo.id);
            Ok(())
        }
        Command::List => {
            let todos: Vec<Todo> = call(&cli, |http, api| http.get(format!("{api}/todos")))
                .await?
                .json()
                .await?;
            for todo in todos {
                println!("{}\t{}", todo.id, todo.title);
            }
            Ok(())
        }
        Command::Logout => {
            session(&cli)?.logout().await?;
            eprintln!("Logged out of {}", cli.issuer);
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<LoggedOut>() => {
            eprintln!("todo-cli: {e}");
            ExitCode::from(4)
        }
        Err(e) => {
            eprintln!("todo-cli: {e:#}");
            ExitCode::from(1)
        }
    }
}
