//! `kp whoami`: who the issuer says the token belongs to (OIDC userinfo), which also proves the token still works.

use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use keyport_client::{Issuer, Session, Userinfo};

use crate::context::{Context, ENV_TOKEN, env_token, print_json};

pub async fn run(context: &Context) -> anyhow::Result<ExitCode> {
    let store = context.store()?;
    let userinfo = match env_token() {
        Some(token) => {
            let issuer = context.issuer_or_current(store.as_ref())?.ok_or_else(|| {
                anyhow!(
                    "{ENV_TOKEN} is set but no issuer is known: pass --issuer URL or set KP_ISSUER"
                )
            })?;
            Issuer::discover(&issuer)
                .await?
                .userinfo(&token)
                .await
                .with_context(|| format!("{issuer} did not accept the token in {ENV_TOKEN}"))?
        }
        None => {
            Session::open(store, context.issuer.as_deref())?
                .userinfo()
                .await?
        }
    };

    if context.json {
        print_json(&userinfo)?;
    } else {
        print_human(&userinfo);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_human(userinfo: &Userinfo) {
    let fields = [
        ("Email", userinfo.email.as_deref()),
        ("Name", userinfo.name.as_deref()),
        ("Workspace", userinfo.workspace.as_deref()),
        ("Role", userinfo.role.as_deref()),
        ("Subject", Some(userinfo.sub.as_str())),
    ];
    for (label, value) in fields {
        if let Some(value) = value {
            println!("{:<10} {value}", format!("{label}:"));
        }
    }
}
