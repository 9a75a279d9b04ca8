//! `kp logout`: revoke the session at the issuer (RFC 7009), then forget it locally whatever the issuer said.

use std::process::ExitCode;

use keyport_client::{Revocation, Session};
use serde_json::json;

use crate::context::{Context, print_json};

pub async fn run(context: &Context) -> anyhow::Result<ExitCode> {
    context.refuse_with_env_token("log out")?;
    let session = Session::open(context.store()?, context.issuer.as_deref())?;
    let issuer = session.issuer().to_owned();

    let (revoked, failure) = match session.logout().await? {
        Revocation::Revoked => {
            eprintln!("✓ Logged out of {issuer}; the session was revoked");
            (true, None)
        }
        Revocation::NotSupported => {
            eprintln!(
                "✓ Logged out of {issuer}. The issuer offers no revocation endpoint, \
                 so the tokens stay valid until they expire"
            );
            (false, None)
        }
        Revocation::Failed(error) => {
            let error = format!("{:#}", anyhow::Error::from(error));
            eprintln!(
                "! Could not revoke the session at {issuer}: {error}\n\
                 ✓ Removed the local credentials anyway; the session may stay valid at \
                 the issuer until it expires"
            );
            (false, Some(error))
        }
    };
    if context.json {
        print_json(&json!({
            "logged_out": true,
            "issuer": issuer,
            "revoked": revoked,
            "revocation_error": failure,
        }))?;
    }
    // The local half worked, but a script must learn that the tokens may
    // still be live.
    Ok(if failure.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
