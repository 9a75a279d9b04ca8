//! kp: log in to any RFC 8414 + RFC 8628 issuer from the terminal, built on `keyport-client`.
//!
//! `kp login` uses the device flow; `kp login --web` the authorization code
//! flow with PKCE and a loopback redirect, falling back to the device flow
//! when no browser can be opened. Both store the same credentials.
//!
//! Human text goes to stderr and data to stdout, so `$(kp token)` works.
//! Exit codes follow gh: 0 ok, 1 error, 2 usage, 4 not logged in, 130 interrupted;
//! `kp status` answers "logged out" with 1.

mod browser;
mod context;
mod login;
mod logout;
mod status;
mod token;
mod whoami;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::context::{Context, EXIT_INTERRUPTED, EXIT_NOT_LOGGED_IN, Interrupted};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    error (network, issuer, local files); for `kp status`: logged out
  2    usage error
  4    not logged in, or the session expired or was revoked
  130  interrupted (Ctrl-C)";

#[derive(Debug, Parser)]
#[command(
    name = "kp",
    version,
    about = "Log in to an OAuth 2.0 issuer from the terminal, with a one-time code or the browser",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The issuer, exactly as its metadata names it (no trailing slash).
    /// Defaults to the issuer of the last login, except for `kp login`.
    #[arg(long, global = true, env = "KP_ISSUER", value_name = "URL")]
    issuer: Option<String>,

    /// Where credentials are kept [default: the user config dir, ~/.config/kp].
    /// Giving it also keeps refresh tokens in the file, not the OS keyring
    #[arg(long, global = true, env = "KP_CONFIG_DIR", value_name = "DIR")]
    config_dir: Option<PathBuf>,

    /// Keep credentials in a 0600 file only, not in the OS keyring (which kp
    /// otherwise uses when one is available)
    #[arg(long, global = true, env = "KP_INSECURE_STORAGE", value_parser = clap::builder::FalseyValueParser::new())]
    insecure_storage: bool,

    /// Print a JSON object on stdout instead of text
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in with a one-time code approved in a browser (RFC 8628 device
    /// flow), or with --web in a browser on this machine (authorization code
    /// flow with PKCE)
    Login(login::LoginArgs),
    /// Show whether you are logged in (exit 1 when not)
    Status,
    /// Print a valid access token, refreshed when needed, for `$(kp token)`
    Token,
    /// Show who the issuer says you are (OIDC userinfo)
    Whoami,
    /// Revoke the session at the issuer, then forget the local credentials
    Logout,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let context = Context::new(cli.issuer, cli.config_dir, cli.insecure_storage, cli.json);
    let outcome = match cli.command {
        Command::Login(args) => {
            let Some(issuer) = context.issuer.clone() else {
                let mut cli = Cli::command();
                // Built so the subcommand's usage line reads `kp login …`.
                cli.build();
                cli.find_subcommand_mut("login")
                    .expect("kp has a login command")
                    .error(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        "kp login needs an issuer: pass --issuer URL or set KP_ISSUER",
                    )
                    .exit();
            };
            login::run(&context, &issuer, args).await
        }
        Command::Status => status::run(&context).await,
        Command::Token => token::run(&context).await,
        Command::Whoami => whoami::run(&context).await,
        Command::Logout => logout::run(&context).await,
    };
    outcome.unwrap_or_else(|error| report(&error))
}

/// Prints the error and picks the exit code scripts branch on.
fn report(error: &anyhow::Error) -> ExitCode {
    if error.is::<Interrupted>() {
        eprintln!("Interrupted");
        return ExitCode::from(EXIT_INTERRUPTED);
    }
    eprintln!("error: {error:#}");
    match error.downcast_ref::<keyport_client::Error>() {
        Some(client_error) if client_error.needs_login() => {
            if context::env_token().is_none() {
                match client_error {
                    keyport_client::Error::SessionExpired => {
                        eprintln!("Run `kp login` to log in again.");
                    }
                    _ => eprintln!("Run `kp login` to log in."),
                }
            }
            ExitCode::from(EXIT_NOT_LOGGED_IN)
        }
        Some(keyport_client::Error::RefreshTokenInKeyring { .. }) => {
            eprintln!(
                "Run kp where the OS keyring is available, or `kp login` again to keep a new \
                 login in the file."
            );
            ExitCode::FAILURE
        }
        Some(keyport_client::Error::Keyring(_)) => {
            eprintln!("Pass --insecure-storage to keep credentials in a 0600 file instead.");
            ExitCode::FAILURE
        }
        _ => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_command() {
        let help = Cli::command().render_help().to_string();
        for command in ["login", "status", "token", "whoami", "logout"] {
            assert!(
                help.lines()
                    .any(|line| line.trim_start().starts_with(command)),
                "no {command} in:\n{help}"
            );
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn web_and_no_browser_together_are_a_usage_error() {
        let error = Cli::try_parse_from(["kp", "login", "--web", "--no-browser"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(error.exit_code(), 2);
        assert!(Cli::try_parse_from(["kp", "login", "--web"]).is_ok());
    }

    #[test]
    fn session_errors_exit_4_and_others_1() {
        let expired = anyhow::Error::from(keyport_client::Error::SessionExpired);
        assert_eq!(report(&expired), ExitCode::from(4));
        let wrapped = anyhow::Error::from(keyport_client::Error::NotLoggedIn).context("whoami");
        assert_eq!(report(&wrapped), ExitCode::from(4));
        assert_eq!(report(&anyhow::anyhow!("boom")), ExitCode::FAILURE);
        assert_eq!(
            report(&anyhow::Error::from(Interrupted)),
            ExitCode::from(130)
        );
    }
}
