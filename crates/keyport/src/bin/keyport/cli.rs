//! The `keyport` command line: the flags and subcommands, as clap reads them.

use clap::{Args, Parser, Subcommand};
use keyport::config::{ServeArgs, StoreArgs};

#[derive(Parser)]
#[command(
    name = "keyport",
    version,
    about = "OAuth 2.0 / OpenID Connect authorization server for CLI and device logins"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
pub(crate) enum UserCommand {
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
pub(crate) enum TotpCommand {
    /// Turn off a user's authenticator and delete their recovery codes
    Reset {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum ClientCommand {
    /// Register a client; a confidential client's secret is printed once
    Add(Box<ClientAdd>),
    /// Client secrets
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Subcommand)]
pub(crate) enum SecretCommand {
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
pub(crate) struct ClientAdd {
    #[arg(long)]
    pub(crate) id: String,
    #[arg(long)]
    pub(crate) name: String,
    /// A public client (CLIs, native apps): no secret
    #[arg(
        long,
        conflicts_with = "confidential",
        required_unless_present = "confidential"
    )]
    pub(crate) public: bool,
    /// A confidential client (servers): gets a secret
    #[arg(long)]
    pub(crate) confidential: bool,
    /// Grant type (repeatable), e.g. urn:ietf:params:oauth:grant-type:device_code, refresh_token
    #[arg(long = "grant", required = true)]
    pub(crate) grants: Vec<String>,
    /// Allowed scope (repeatable)
    #[arg(long = "scope")]
    pub(crate) scopes: Vec<String>,
    /// Allowed resource / audience URL (repeatable)
    #[arg(long = "audience")]
    pub(crate) audiences: Vec<String>,
    /// Redirect URI for the authorization code flow (repeatable); a
    /// loopback one (http://127.0.0.1/…) matches on any port
    #[arg(long = "redirect-uri")]
    pub(crate) redirect_uris: Vec<String>,
    /// Scope granted when a request names none (repeatable); default: all allowed scopes
    #[arg(long = "default-scope")]
    pub(crate) default_scopes: Vec<String>,
    /// Skip the consent page (the operator's own apps)
    #[arg(long)]
    pub(crate) first_party: bool,
    /// Access token format: jwt (default) or opaque
    #[arg(long)]
    pub(crate) access_token_format: Option<String>,
    /// JWT access token algorithm: EdDSA (default), ES256 or RS256
    #[arg(long)]
    pub(crate) access_token_alg: Option<String>,
    /// Prefix of opaque access tokens (default kp_at_)
    #[arg(long)]
    pub(crate) access_token_prefix: Option<String>,
    /// Prefix of refresh tokens (default kp_rt_)
    #[arg(long)]
    pub(crate) refresh_token_prefix: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum WorkspaceCommand {
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
pub(crate) enum MemberCommand {
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
pub(crate) enum SessionsCommand {
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
pub(crate) enum KeysCommand {
    /// Create new signing keys; the old ones stay published until the next rotation
    Rotate,
}

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Export audit events
    Export {
        /// Only events at or after this unix time (seconds)
        #[arg(long, default_value_t = 0)]
        since: i64,
    },
}
