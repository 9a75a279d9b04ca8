//! `keyport serve`: start-up (TLS files, the store, the first-run link or
//! the demo data), SIGHUP reloads of the certificate, and graceful shutdown.

use std::sync::Arc;

use anyhow::Context;
use keyport::admin;
use keyport::clock::SystemClock;
use keyport::config::{Config, ServeArgs, StoreArgs};
use keyport::http::TlsCertificate;
use keyport::{Keyport, http};

pub(crate) async fn run_server(store: &StoreArgs, serve: &ServeArgs) -> anyhow::Result<()> {
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
