//! `kp login`: the RFC 8628 device flow at the terminal, shown the way gh shows it.

use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use keyport_client::{
    ClientInfo, DeviceLoginRequest, DeviceMetadata, Issuer, PollOptions, Session,
};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

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

    /// A name for this device on the approval page [default: the hostname]
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,

    /// Print the URL but do not open a browser
    #[arg(long)]
    no_browser: bool,
}

pub async fn run(context: &Context, issuer: &str, args: LoginArgs) -> anyhow::Result<ExitCode> {
    context.refuse_with_env_token("log in")?;
    let store = context.store()?;
    let issuer = Issuer::discover(issuer).await?;

    let mut device = DeviceMetadata::detect();
    device.cli_label = args.label.or_else(|| device.dns_name.clone());
    device.client_info = Some(ClientInfo {
        name: Some("kp".into()),
        version: Some(env!("CARGO_PKG_VERSION").into()),
    });
    let request = DeviceLoginRequest {
        client_id: args.client_id,
        scopes: scopes_from_args(&args.scopes),
        resource: args.resource,
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
    if should_open_browser(args.no_browser, &BrowserEnv::current()) {
        let target = url.to_owned();
        let opened = tokio::task::spawn_blocking(move || webbrowser::open(&target)).await?;
        if let Err(error) = opened {
            eprintln!("! Could not open a browser ({error}); open the URL above yourself");
        }
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
    let credentials = polled?;

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

/// The parts of the environment that decide whether a browser can be opened.
#[derive(Debug, Default)]
struct BrowserEnv {
    /// `$BROWSER` names the command to use, which works without a display
    /// (tests point it at a script).
    browser_set: bool,
    ssh: bool,
    display: bool,
}

impl BrowserEnv {
    fn current() -> Self {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        Self {
            browser_set: set("BROWSER"),
            ssh: set("SSH_CONNECTION"),
            display: set("DISPLAY") || set("WAYLAND_DISPLAY"),
        }
    }
}

/// Over SSH the browser would open on the wrong machine, and on a Linux box
/// without a display webbrowser falls back to a text browser that takes
/// over the terminal we are polling from (Azure/azure-cli#21112).
fn should_open_browser(no_browser: bool, env: &BrowserEnv) -> bool {
    let needs_display = cfg!(all(unix, not(target_os = "macos")));
    !no_browser && !env.ssh && (env.display || env.browser_set || !needs_display)
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
    fn browser_opens_only_where_it_can_reach_the_user() {
        let desktop = BrowserEnv {
            display: true,
            ..Default::default()
        };
        assert!(should_open_browser(false, &desktop));
        assert!(!should_open_browser(true, &desktop));

        let over_ssh = BrowserEnv {
            display: true,
            ssh: true,
            browser_set: true,
        };
        assert!(!should_open_browser(false, &over_ssh));

        let headless = BrowserEnv::default();
        let scripted = BrowserEnv {
            browser_set: true,
            ..Default::default()
        };
        if cfg!(target_os = "linux") {
            assert!(!should_open_browser(false, &headless));
        }
        assert!(should_open_browser(false, &scripted));
    }

    #[test]
    fn qr_code_renders_as_text() {
        let qr = qr_code("https://auth.example.com/device?user_code=WDJB-MJHT").unwrap();
        assert!(qr.lines().count() > 10);
        assert!(qr.contains('█') || qr.contains('▀') || qr.contains('▄'));
    }
}
