//! `keyport`: serve the authorization server, or administer it.

mod cli;
mod logging;
mod serve;

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use keyport::Keyport;
use keyport::admin;
use keyport::clock::SystemClock;
use keyport::config::{Config, ServeArgs, StoreArgs};
use keyport::domain::clients::ClientSpec;
use serde_json::Value;

use cli::{
    AuditCommand, Cli, ClientCommand, Command, KeysCommand, MemberCommand, SecretCommand,
    SessionsCommand, TotpCommand, UserCommand, WorkspaceCommand,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr through [`logging::LOG`], which writes the lines in
/// batches; the caller writes what is left at the end.
fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYPORT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(&*logging::LOG);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    logging::LOG.flush_every_linger();
}

async fn open(store: &StoreArgs, serve: &ServeArgs) -> anyhow::Result<Keyport> {
    let config = Config::load(store, serve)?;
    Ok(Keyport::open(config, Arc::new(SystemClock)).await?)
}

fn print(json: bool, value: Value, human: impl FnOnce(&Value) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("JSON prints")
        );
    } else {
        println!("{}", human(&value));
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    let none = ServeArgs::default();
    match cli.command {
        Command::Serve { serve, log_format } => {
            init_logging(&log_format);
            let served = serve::run_server(&cli.store, &serve).await;
            logging::LOG.flush();
            return served;
        }
        Command::Migrate => {
            open(&cli.store, &none).await?;
            print(json, serde_json::json!({ "migrated": true }), |_| {
                "migrations applied".into()
            });
        }
        Command::User(UserCommand::Add { email, name, .. }) => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            let kp = open(&cli.store, &none).await?;
            let user = admin::add_user(&kp, &email, name.as_deref(), password).await?;
            print(json, user, |u| {
                format!(
                    "added user {} ({})",
                    u["email"].as_str().unwrap_or(""),
                    u["id"].as_str().unwrap_or("")
                )
            });
        }
        Command::User(UserCommand::Disable { email }) => {
            let kp = open(&cli.store, &none).await?;
            let done = admin::disable_user(&kp, &email).await?;
            print(json, done, |d| {
                format!(
                    "disabled {}; ended {} session(s)",
                    d["email"].as_str().unwrap_or(""),
                    d["sessions_ended"]
                )
            });
        }
        Command::User(UserCommand::Enable { email }) => {
            let kp = open(&cli.store, &none).await?;
            let done = admin::enable_user(&kp, &email).await?;
            print(json, done, |d| {
                format!("enabled {}", d["email"].as_str().unwrap_or(""))
            });
        }
        Command::User(UserCommand::Unlock { email }) => {
            let kp = open(&cli.store, &none).await?;
            let done = admin::unlock_user(&kp, &email).await?;
            print(json, done, |d| {
                format!(
                    "cleared failed sign-ins of {}",
                    d["email"].as_str().unwrap_or("")
                )
            });
        }
        Command::User(UserCommand::Totp(TotpCommand::Reset { email })) => {
            let kp = open(&cli.store, &none).await?;
            let done = admin::reset_totp(&kp, &email).await?;
            print(json, done, |d| {
                format!(
                    "turned off the authenticator of {} and deleted its recovery codes",
                    d["email"].as_str().unwrap_or("")
                )
            });
        }
        Command::Client(ClientCommand::Secret(SecretCommand::Rotate { id, grace_hours })) => {
            let kp = open(&cli.store, &none).await?;
            let rotated = admin::rotate_client_secret(&kp, &id, grace_hours * 3600).await?;
            print(json, rotated, |r| {
                format!(
                    "new client secret for {} (shown once, store it now): {}\nthe old secret works until {}",
                    r["client_id"].as_str().unwrap_or(""),
                    r["client_secret"].as_str().unwrap_or(""),
                    r["previous_secret_expires_at"].as_str().unwrap_or("")
                )
            });
        }
        Command::Client(ClientCommand::Add(add)) => {
            let kp = open(&cli.store, &none).await?;
            let new = ClientSpec {
                id: add.id,
                name: add.name,
                confidential: add.confidential,
                grants: add.grants,
                scopes: add.scopes,
                default_scopes: add.default_scopes,
                audiences: add.audiences,
                redirect_uris: add.redirect_uris,
                first_party: add.first_party,
                access_token_format: add.access_token_format,
                access_token_alg: add.access_token_alg,
                access_token_prefix: add.access_token_prefix,
                refresh_token_prefix: add.refresh_token_prefix,
            };
            let client = admin::add_client(&kp, new).await?;
            print(json, client, |c| match c["client_secret"].as_str() {
                Some(secret) => format!(
                    "added client {}\nclient secret (shown once, store it now): {secret}",
                    c["client_id"].as_str().unwrap_or("")
                ),
                None => format!(
                    "added public client {}",
                    c["client_id"].as_str().unwrap_or("")
                ),
            });
        }
        Command::Workspace(WorkspaceCommand::Add { slug, name }) => {
            let kp = open(&cli.store, &none).await?;
            let ws = admin::add_workspace(&kp, &slug, &name).await?;
            print(json, ws, |w| {
                format!("added workspace {}", w["slug"].as_str().unwrap_or(""))
            });
        }
        Command::Workspace(WorkspaceCommand::Member(MemberCommand::Add {
            workspace,
            email,
            role,
        })) => {
            let kp = open(&cli.store, &none).await?;
            let member = admin::add_member(&kp, &workspace, &email, &role).await?;
            print(json, member, |m| {
                format!(
                    "{} is {} of {}",
                    m["email"].as_str().unwrap_or(""),
                    m["role"].as_str().unwrap_or(""),
                    m["workspace"].as_str().unwrap_or("")
                )
            });
        }
        Command::Sessions(SessionsCommand::List { user }) => {
            let kp = open(&cli.store, &none).await?;
            let sessions = admin::list_sessions(&kp, user.as_deref()).await?;
            print(json, sessions, |rows| {
                let mut out = format!(
                    "{:<34} {:<24} {:<16} {:<20} {:<15}",
                    "ID", "USER", "CLIENT", "LABEL", "IP"
                );
                for row in rows.as_array().into_iter().flatten() {
                    let field = |k: &str| row[k].as_str().unwrap_or("-").to_string();
                    out.push_str(&format!(
                        "\n{:<34} {:<24} {:<16} {:<20} {:<15}",
                        field("id"),
                        field("user"),
                        field("client_id"),
                        field("label"),
                        field("ip")
                    ));
                }
                out
            });
        }
        Command::Sessions(SessionsCommand::Revoke { id }) => {
            let kp = open(&cli.store, &none).await?;
            let done = admin::revoke_session(&kp, &id).await?;
            print(json, done, |_| format!("revoked session {id}"));
        }
        Command::Keys(KeysCommand::Rotate) => {
            let kp = open(&cli.store, &none).await?;
            let done = admin::rotate_keys(&kp).await?;
            print(json, done, |d| format!("new signing keys: {}", d["active"]));
        }
        Command::Backup { to } => {
            let kp = open(&cli.store, &none).await?;
            if kp.store().engine() == keyport::store::Engine::Postgres {
                eprintln!(
                    "error: keyport backup copies the SQLite database; for PostgreSQL use \
                     pg_dump -Fc (or your platform's point-in-time recovery)"
                );
                std::process::exit(2);
            }
            let done = admin::backup(&kp, &to).await?;
            print(json, done, |d| {
                format!(
                    "backed up to {} ({} bytes); keep master.key apart from it: the backup needs it",
                    d["backup"].as_str().unwrap_or(""),
                    d["bytes"]
                )
            });
        }
        Command::Audit(AuditCommand::Export { since }) => {
            let kp = open(&cli.store, &none).await?;
            let events = admin::export_audit(&kp, since * 1000).await?;
            print(json, events, |rows| {
                rows.as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}
