//! `kp token`: a valid access token on stdout and nothing else, for `$(kp token)`.

use std::process::ExitCode;

use keyport_client::Session;
use serde_json::json;

use crate::context::{Context, env_token, print_json};

pub async fn run(context: &Context) -> anyhow::Result<ExitCode> {
    if let Some(token) = env_token() {
        if context.json {
            print_json(&json!({ "access_token": token.secret(), "storage": "env" }))?;
        } else {
            println!("{}", token.secret());
        }
        return Ok(ExitCode::SUCCESS);
    }

    let session = Session::open(context.store()?, context.issuer.as_deref())?;
    let credentials = session.fresh_credentials().await?;
    if context.json {
        print_json(&json!({
            "access_token": credentials.access_token.secret(),
            "token_type": "Bearer",
            "expires_at": credentials.expires_at,
            "issuer": credentials.issuer,
            "scope": credentials.scope,
            "storage": session.store().kind(),
        }))?;
    } else {
        println!("{}", credentials.access_token.secret());
    }
    Ok(ExitCode::SUCCESS)
}
