//! `keyport`: serve the authorization server, or administer it.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use keyport::admin;
use keyport::clock::SystemClock;
use keyport::config::{Config, ServeArgs, StoreArgs};
use keyport::domain::clients::ClientSpec;
use keyport::http::TlsCertificate;
use keyport::{Keyport, http};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "keyport",
    version,
    about = "OAuth 2.0 / OpenID Connect authorization server for CLI and device logins"
)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server
    Serve {
        #[command(flatten)]
        serve: ServeArgs,
        /// Log format: text or json
        #[arg(long, env = "KEYPORT_LOG_FORMAT", default_value = "text")]
        log_format: String,
    },
    /// Apply database migrations and exit
    Migrate,
    /// Manage users
    #[command(subcommand)]
    User(UserCommand),
    /// Manage OAuth clients
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage workspaces and their members
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// List and revoke CLI sessions
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Manage signing keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read the audit trail
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Copy the SQLite database consistently, while the server runs
    Backup {
        /// The new backup file (must not exist yet)
        #[arg(long)]
        to: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from stdin
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Read the password from standard input
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Refuse the user every sign-in and end all their sessions
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Let a disabled user sign in again
    Enable {
        #[arg(long)]
        email: String,
    },
    /// Clear the failed sign-in count that locks an account
    Unlock {
        #[arg(long)]
        email: String,
    },
    /// Two-step verification by authenticator app
    #[command(subcommand)]
    Totp(TotpCommand),
}

#[derive(Subcommand)]
enum TotpCommand {
    /// Turn off a user's authenticator and delete their recovery codes
    Reset {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client; a confidential client's secret is printed once
    Add(Box<ClientAdd>),
    /// Client secrets
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Give a confidential client a new secret (printed once); the old one
    /// keeps working for the grace period
    Rotate {
        #[arg(long)]
        id: String,
        /// Hours the old secret keeps working
        #[arg(long, default_value_t = 24)]
        grace_hours: i64,
    },
}

#[derive(Args)]
struct ClientAdd {
    #[arg(long)]
    id: String,
    #[arg(long)]
    name: String,
    /// A public client (CLIs, native apps): no secret
    #[arg(
        long,
        conflicts_with = "confidential",
        required_unless_present = "confidential"
    )]
    public: bool,
    /// A confidential client (servers): gets a secret
    #[arg(long)]
    confidential: bool,
    /// Grant type (repeatable), e.g. urn:ietf:params:oauth:grant-type:device_code, refresh_token
    #[arg(long = "grant", required = true)]
    grants: Vec<String>,
    /// Allowed scope (repeatable)
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Allowed resource / audience URL (repeatable)
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// Redirect URI for the authorization code flow (repeatable); a
    /// loopback one (http://127.0.0.1/…) matches on any port
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Scope granted when a request names none (repeatable); default: all allowed scopes
    #[arg(long = "default-scope")]
    default_scopes: Vec<String>,
    /// Skip the consent page (the operator's own apps)
    #[arg(long)]
    first_party: bool,
    /// Access token format: jwt (default) or opaque
    #[arg(long)]
    access_token_format: Option<String>,
    /// JWT access token algorithm: EdDSA (default), ES256 or RS256
    #[arg(long)]
    access_token_alg: Option<String>,
    /// Prefix of opaque access tokens (default kp_at_)
    #[arg(long)]
    access_token_prefix: Option<String>,
    /// Prefix of refresh tokens (default kp_rt_)
    #[arg(long)]
    refresh_token_prefix: Option<String>,
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Add a workspace
    Add {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
    /// Manage members
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Add a member (or change their role): viewer, member, admin or owner
    Add {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// List live sessions
    List {
        /// Only this user's sessions (email)
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a session: its refresh tokens stop at once, its access tokens fail introspection
    Revoke { id: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create new signing keys; the old ones stay published until the next rotation
    Rotate,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Export audit events
    Export {
        /// Only events at or after this unix time (seconds)
        #[arg(long, default_value_t = 0)]
        since: i64,
    },
}

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

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYPORT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
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
            return run_server(&cli.store, &serve).await;
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

async fn run_server(store: &StoreArgs, serve: &ServeArgs) -> anyhow::Result<()> {
    let descriptors = http::serve::raise_open_file_limit();
    let config = Config::load(store, serve)?;
    // A certificate or key that cannot be used stops the start before the
    // database is opened.
    let certificate = match &config.tls {
        Some(files) => Some(Arc::new(TlsCertificate::load(files)?)),
        None => None,
    };
    let kp = Keyport::open(config, Arc::new(SystemClock)).await?;
    // Listening for SIGHUP before "ready" keeps its default action (exit)
    // from ever meeting a server that reloads on it.
    let reloads = certificate.clone().map(reload_on_hangup).transpose()?;
    let listener = tokio::net::TcpListener::bind(kp.config().listen)
        .await
        .with_context(|| format!("cannot listen on {}", kp.config().listen))?;
    if !kp.config().limits.enabled {
        tracing::warn!("rate limits are off (--no-rate-limits)");
    }
    if serve.demo {
        let (email, password) = admin::seed_demo(&kp).await?;
        eprintln!(
            "\nDemo data is ready. In another terminal run:\n\n    kp login --issuer {} --client-id kp\n\nand sign in as {email} with password {password}\n",
            kp.config().issuer
        );
    } else {
        match kp.setup_link().await? {
            Some(link) => show_setup_link(&kp.config().data_dir, &link)?,
            // A link written at an earlier start is dead now: remove it.
            None => {
                let _ = std::fs::remove_file(kp.config().data_dir.join(SETUP_LINK_FILE));
            }
        }
    }
    tracing::info!(issuer = %kp.config().issuer, listen = %kp.config().listen, tls = certificate.is_some(), engine = ?kp.store().engine(), open_files = descriptors, "keyport is ready");
    let maintenance = kp.spawn_maintenance();
    let store_handle = kp.store().clone();
    match certificate {
        Some(certificate) => {
            http::serve_tls(kp, listener, certificate, shutdown_signal()).await?;
        }
        None => http::serve(kp, listener, shutdown_signal()).await?,
    }
    if let Some(reloads) = reloads {
        reloads.abort();
    }
    maintenance.abort();
    store_handle.close().await;
    tracing::info!("keyport stopped");
    Ok(())
}

/// Where the setup link goes when there is no terminal to print it on.
const SETUP_LINK_FILE: &str = "setup-link.txt";

/// The setup link is a credential: it goes to the terminal, never into the
/// logs. Without a terminal (a service manager, a container) it is written
/// to a file only the server's user can read, and the log names the file.
fn show_setup_link(data_dir: &std::path::Path, link: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let text = format!(
        "No users yet. Create the first admin here (the link works once, for an hour):\n\n    {link}\n"
    );
    if std::io::stderr().is_terminal() {
        eprintln!("\n{text}");
        return Ok(());
    }
    let path = data_dir.join(SETUP_LINK_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    tracing::warn!(file = %path.display(), "no users yet: the one-time setup link is in this file");
    Ok(())
}

/// On SIGHUP, reads the TLS certificate and key again: new handshakes get
/// the new pair, open connections keep theirs, and a pair that cannot be
/// used is logged and leaves the old one in place.
#[cfg(unix)]
fn reload_on_hangup(
    certificate: Arc<TlsCertificate>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    Ok(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let certificate = certificate.clone();
            // File reads and key parsing: off the runtime's threads.
            match tokio::task::spawn_blocking(move || certificate.reload()).await {
                Ok(Ok(())) => tracing::info!("tls certificate reloaded"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "tls certificate not reloaded; serving the previous one");
                }
                Err(e) => tracing::error!(error = %e, "tls certificate reload failed"),
            }
        }
    }))
}

/// No SIGHUP off Unix: the certificate is read at start only.
#[cfg(not(unix))]
fn reload_on_hangup(
    _certificate: Arc<TlsCertificate>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    Ok(tokio::spawn(async {}))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
