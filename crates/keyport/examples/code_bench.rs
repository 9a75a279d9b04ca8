//! Authorization codes for the code-exchange load runs of `bench/run.sh`:
//! opens a `Keyport` on the running server's data dir and database (SQLite
//! in WAL mode lets a second process write; PostgreSQL is shared anyway),
//! seeds a user, a workspace and a public PKCE client if they are missing,
//! then mints COUNT one-time codes the way the consent page does
//! (`authorization_request` then `issue_code`), each with its own S256
//! verifier, and writes them to OUT as `code verifier` lines. The codes
//! live 60 s, so the exchanges must start right after.
//!
//! Prints one JSON line on stdout: how many codes, and how fast they were
//! minted.
//!
//! Usage: code_bench --data-dir DIR [--database-url URL] --issuer URL
//!        --client ID [--opaque] --count N --out FILE

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{StreamExt, TryStreamExt, stream};
use keyport::admin;
use keyport::clock::{Clock, SystemClock};
use keyport::config::{Config, ServeArgs, StoreArgs};
use keyport::crypto::{b64url, random_token, sha256};
use keyport::domain::authorize::{AuthorizeParams, Outcome, Refusal};
use keyport::domain::clients::ClientSpec;
use keyport::{Caller, Keyport};

/// The redirect URI registered for the bench clients and sent with every
/// code (a loopback one; the exchange never follows it).
const REDIRECT_URI: &str = "http://127.0.0.1/callback";
const USER: &str = "code-bench@example.com";
const WORKSPACE: &str = "code-bench";
/// Codes minted at once: enough to keep the store's writer batching.
const CONCURRENCY: usize = 64;

#[derive(Parser)]
struct Args {
    /// The server's data dir (its master key lives there unless
    /// KEYPORT_MASTER_KEY is set)
    #[arg(long)]
    data_dir: PathBuf,
    /// The server's --database-url, if it has one
    #[arg(long)]
    database_url: Option<String>,
    /// The server's issuer
    #[arg(long)]
    issuer: String,
    /// The public client the codes are for (created when missing)
    #[arg(long)]
    client: String,
    /// Create the client with opaque access tokens instead of JWTs
    #[arg(long)]
    opaque: bool,
    /// Codes to mint
    #[arg(long)]
    count: usize,
    /// Where the `code verifier` lines go
    #[arg(long)]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = StoreArgs {
        data_dir: Some(args.data_dir.clone()),
        database_url: args.database_url.clone(),
        config: None,
    };
    let serve = ServeArgs {
        issuer: Some(args.issuer.clone()),
        no_rate_limits: true,
        ..ServeArgs::default()
    };
    let config = Config::load(&store, &serve)?;
    let clock = Arc::new(SystemClock);
    let kp = Keyport::open(config, clock.clone())
        .await
        .context("opening the server's database")?;

    let user = seed(&kp, &args).await?;
    let caller = Caller::default();
    let started = Instant::now();
    let codes: Vec<(String, String)> = stream::iter(0..args.count)
        .map(|_| {
            let (kp, user, caller, client, clock) = (&kp, &user, &caller, &args.client, &clock);
            async move {
                let verifier = random_token();
                let params = AuthorizeParams {
                    response_type: Some("code".into()),
                    client_id: Some(client.clone()),
                    redirect_uri: Some(REDIRECT_URI.into()),
                    scope: Some("openid offline_access".into()),
                    code_challenge: Some(b64url(&sha256(verifier.as_bytes()))),
                    code_challenge_method: Some("S256".into()),
                    ..AuthorizeParams::default()
                };
                let request = match kp.authorization_request(&params).await? {
                    Ok(request) => request,
                    Err(Refusal::Page(why)) => bail!("authorization request refused: {why}"),
                    Err(Refusal::Redirect(r)) => {
                        bail!(
                            "authorization request refused: {}",
                            r.url(&kp.config().issuer)
                        )
                    }
                };
                let redirect = kp
                    .issue_code(&request, user, None, clock.now(), caller)
                    .await?;
                match redirect.outcome {
                    Outcome::Code(code) => Ok((code.expose().to_string(), verifier)),
                    Outcome::Error(code, why) => bail!("no code: {} {why}", code.as_str()),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let secs = started.elapsed().as_secs_f64();

    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?,
    );
    for (code, verifier) in &codes {
        writeln!(out, "{code} {verifier}")?;
    }
    out.flush()?;
    println!(
        "{}",
        serde_json::json!({
            "client": args.client,
            "codes": codes.len(),
            "mint_secs": (secs * 1000.0).round() / 1000.0,
            "per_sec": (codes.len() as f64 / secs).round(),
        })
    );
    Ok(())
}

/// The user (a member of one workspace, so codes and tokens carry a
/// workspace and role like the device logins) and the client, unless a
/// previous call made them.
async fn seed(kp: &Keyport, args: &Args) -> anyhow::Result<keyport::store::directory::User> {
    let pool = kp.store().pool();
    if keyport::store::directory::user_by_email(pool, USER)
        .await?
        .is_none()
    {
        admin::add_user(kp, USER, None, random_token()).await?;
        admin::add_workspace(kp, WORKSPACE, "Code bench").await?;
        admin::add_member(kp, WORKSPACE, USER, "member").await?;
    }
    if kp.client(&args.client).await?.is_none() {
        admin::add_client(
            kp,
            ClientSpec {
                id: args.client.clone(),
                name: format!("Code bench ({})", args.client),
                confidential: false,
                grants: vec!["authorization_code".into(), "refresh_token".into()],
                scopes: vec!["openid".into(), "offline_access".into()],
                redirect_uris: vec![REDIRECT_URI.into()],
                access_token_format: Some(if args.opaque { "opaque" } else { "jwt" }.into()),
                ..ClientSpec::default()
            },
        )
        .await?;
    }
    keyport::store::directory::user_by_email(pool, USER)
        .await?
        .context("the bench user exists")
}
