//! `kp login`: the RFC 8628 device flow at the terminal, shown the way gh shows it, or with `--web` the authorization code flow with PKCE in a browser on this machine (RFC 8252 loopback redirect).

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use keyport_client::{
    ClientInfo, Credentials, DeviceLoginRequest, DeviceMetadata, Issuer, PollOptions, Session,
    WebLogin, WebLoginRequest,
};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

use crate::browser::{self, BrowserEnv};
use crate::context::{Context, Interrupted, StatusReport, print_json, who};

const DEFAULT_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The OAuth client to log in as
    #[arg(long, env = "KP_CLIENT_ID", default_value = "kp", value_name = "ID")]
    client_id: String,

    /// A scope to request; repeat it or give a space-separated list
    /// [default: openid profile email offline_access]
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,

    /// The API the tokens are for (RFC 8707 resource indicator)
    #[arg(long, value_name = "URL")]
    resource: Option<String>,

    /// A name for this device on the device flow's approval page
    /// [default: the hostname]
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,

    /// Print the URL but do not open a browser (device flow)
    #[arg(long)]
    no_browser: bool,

    /// Sign in in a browser on this machine instead of entering a code: the
    /// authorization code flow with PKCE, the browser returning to kp on
    /// 127.0.0.1 (RFC 8252). Falls back to the device flow when no browser
    /// can be opened (over SSH, no display, or $BROWSER fails). Not with
    /// --no-browser, which asks for the device flow
    #[arg(long, conflicts_with = "no_browser")]
    web: bool,
}

pub async fn run(context: &Context, issuer: &str, args: LoginArgs) -> anyhow::Result<ExitCode> {
    context.refuse_with_env_token("log in")?;
    let store = context.store()?;
    let issuer = Issuer::discover(issuer).await?;
    let env = BrowserEnv::current();

    let credentials = if args.web {
        match env.unavailable() {
            Some(reason) => {
                eprintln!(
                    "! Cannot open a browser ({reason}); logging in with a one-time code instead"
                );
                device_login(&issuer, &args, &env, false).await?
            }
            None => match web_login(&issuer, &args, &env).await? {
                Ok(credentials) => credentials,
                Err(reason) => {
                    eprintln!(
                        "! Could not open a browser ({reason}); logging in with a one-time code instead"
                    );
                    device_login(&issuer, &args, &env, false).await?
                }
            },
        }
    } else {
        let open_browser = !args.no_browser && env.unavailable().is_none();
        device_login(&issuer, &args, &env, open_browser).await?
    };

    Session::login(store.clone(), credentials.clone()).await?;
    match who(&credentials) {
        Some(user) => eprintln!("✓ Logged in to {} as {user}", credentials.issuer),
        None => eprintln!("✓ Logged in to {}", credentials.issuer),
    }
    if context.json {
        print_json(&StatusReport::logged_in(&credentials, store.kind()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// RFC 8628: shows the code and URL, opens the browser when asked to, and
/// polls until the user approves.
async fn device_login(
    issuer: &Issuer,
    args: &LoginArgs,
    env: &BrowserEnv,
    open_browser: bool,
) -> anyhow::Result<Credentials> {
    let mut device = DeviceMetadata::detect();
    device.cli_label = args.label.clone().or_else(|| device.dns_name.clone());
    device.client_info = Some(ClientInfo {
        name: Some("kp".into()),
        version: Some(env!("CARGO_PKG_VERSION").into()),
    });
    let request = DeviceLoginRequest {
        client_id: args.client_id.clone(),
        scopes: scopes_from_args(&args.scopes),
        resource: args.resource.clone(),
        device,
    };
    let login = issuer.start_device_login(&request).await?;

    let url = login
        .verification_uri_complete()
        .unwrap_or(login.verification_uri());
    eprintln!("! First copy your one-time code: {}", login.user_code());
    eprintln!("Open this URL to continue in your web browser: {url}");
    if let Some(qr) = qr_code(url) {
        eprintln!("{qr}");
    }
    if open_browser && let Err(error) = browser::open(url, env).await {
        eprintln!("! Could not open a browser ({error}); open the URL above yourself");
    }

    let spinner = spinner("Waiting for you to approve in the browser…");
    let options = PollOptions::default();
    let polled = tokio::select! {
        polled = login.poll(&options) => polled,
        Ok(()) = tokio::signal::ctrl_c() => {
            spinner.finish_and_clear();
            return Err(Interrupted.into());
        }
    };
    spinner.finish_and_clear();
    Ok(polled?)
}

/// RFC 6749 §4.1 with PKCE: opens the authorization URL and waits for the
/// browser to come back to the loopback listener. `Ok(Err(reason))` when
/// no browser could be opened, for the caller to fall back on the device
/// flow; the listener is closed by then.
async fn web_login(
    issuer: &Issuer,
    args: &LoginArgs,
    env: &BrowserEnv,
) -> anyhow::Result<Result<Credentials, String>> {
    let request = WebLoginRequest {
        client_id: args.client_id.clone(),
        scopes: scopes_from_args(&args.scopes),
        resource: args.resource.clone(),
    };
    let login = issuer.start_web_login(&request).await?;
    let url = login.authorization_url().to_owned();
    eprintln!("Opening this URL in your browser to sign in: {url}");

    // The browser may come back before its opener has finished (a browser
    // named in $BROWSER keeps running), so both are awaited together.
    let finishing = login.finish(WebLogin::DEFAULT_TIMEOUT);
    let opening = browser::open(&url, env);
    tokio::pin!(finishing, opening);
    let mut opened = false;
    let spinner = spinner("Waiting for you to sign in in the browser…");
    let outcome = loop {
        tokio::select! {
            result = &mut opening, if !opened => match result {
                Ok(()) => opened = true,
                Err(reason) => break Ok(Err(reason)),
            },
            finished = &mut finishing => break finished.map(Ok).map_err(Into::into),
            Ok(()) = tokio::signal::ctrl_c() => break Err(Interrupted.into()),
        }
    };
    spinner.finish_and_clear();
    outcome
}

/// Each `--scope` may itself be a space-separated list (as the wire format
/// is); duplicates go, order stays. Commas are not separators: RFC 6749 §3.3
/// allows them inside a scope.
fn scopes_from_args(args: &[String]) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in args.iter().flat_map(|arg| arg.split_whitespace()) {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if scopes.is_empty() {
        scopes = DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect();
    }
    scopes
}

fn qr_code(url: &str) -> Option<String> {
    let code = QrCode::new(url.as_bytes()).ok()?;
    // Inverted so the code reads on the dark background most terminals have.
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .build(),
    )
}

fn spinner(message: &'static str) -> ProgressBar {
    // Draws to stderr, and nothing at all when stderr is not a terminal.
    let spinner = ProgressBar::new_spinner().with_message(message);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        spinner.set_style(style);
    }
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scopes_default_when_none_are_given() {
        assert_eq!(scopes_from_args(&[]), DEFAULT_SCOPES);
        assert_eq!(scopes_from_args(&owned(&["  "])), DEFAULT_SCOPES);
    }

    #[test]
    fn scopes_may_repeat_and_be_space_separated() {
        let scopes = scopes_from_args(&owned(&["openid email", "agents:read", "email", "a,b"]));
        assert_eq!(scopes, ["openid", "email", "agents:read", "a,b"]);
    }

    #[test]
    fn qr_code_renders_as_text() {
        let qr = qr_code("https://auth.example.com/device?user_code=WDJB-MJHT").unwrap();
        assert!(qr.lines().count() > 10);
        assert!(qr.contains('█') || qr.contains('▀') || qr.contains('▄'));
    }
}
