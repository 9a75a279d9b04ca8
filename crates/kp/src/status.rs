//! `kp status`: whether usable credentials exist, without calling the issuer (exit 1 when not).
//!
//! Exit 1, not the 4 of `kp token` and `kp whoami`: "logged out" is the
//! answer status gives, not a failure to authenticate (PRODUCT.md, Commands).

use std::process::ExitCode;

use keyport_client::{FileStore, unix_now};

use crate::context::{
    Context, ENV_TOKEN, StatusReport, describe_expiry, env_token, print_json, who,
};

pub async fn run(context: &Context) -> anyhow::Result<ExitCode> {
    let store = context.store()?;
    let issuer = context.issuer_or_current(store.as_ref())?;

    if env_token().is_some() {
        if context.json {
            print_json(&StatusReport::without_credentials(true, issuer, "env"))?;
        } else {
            println!("Using the access token in {ENV_TOKEN}; stored credentials are ignored.");
        }
        return Ok(ExitCode::SUCCESS);
    }

    // Offline on purpose: status answers from what is stored, as fast as a
    // prompt needs; `kp whoami` asks the issuer.
    let credentials = match &issuer {
        Some(issuer) => store.load(issuer)?,
        None => None,
    }
    .filter(|credentials| credentials.is_usable(unix_now()));

    let Some(credentials) = credentials else {
        if context.json {
            print_json(&StatusReport::without_credentials(
                false,
                issuer.clone(),
                store.kind(),
            ))?;
        }
        match issuer {
            Some(issuer) => eprintln!("Not logged in to {issuer}. Run `kp login` to log in."),
            None => eprintln!("Not logged in. Run `kp login --issuer URL` to log in."),
        }
        return Ok(ExitCode::FAILURE);
    };

    if context.json {
        print_json(&StatusReport::logged_in(&credentials, store.kind()))?;
        return Ok(ExitCode::SUCCESS);
    }
    match who(&credentials) {
        Some(user) => println!("Logged in to {} as {user}", credentials.issuer),
        None => println!("Logged in to {}", credentials.issuer),
    }
    println!("  Client:   {}", credentials.client_id);
    println!("  Scopes:   {}", credentials.scope);
    let expiry = describe_expiry(credentials.expires_at, unix_now());
    let renewal = if credentials.refresh_token.is_some() {
        ", renewed automatically"
    } else {
        ""
    };
    if credentials.access_token_valid(unix_now(), 0) {
        println!("  Token:    expires {expiry}{renewal}");
    } else {
        println!("  Token:    expired {expiry}{renewal}");
    }
    let file = FileStore::new(context.config_dir()?).path();
    match store.kind() {
        "keyring" => println!("  Storage:  OS keyring (refresh token), {}", file.display()),
        _ => println!("  Storage:  {}", file.display()),
    }
    Ok(ExitCode::SUCCESS)
}
