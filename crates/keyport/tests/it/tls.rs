//! Keyport on PostgreSQL over TLS (rustls), with `sslmode` and `sslrootcert`
//! in the URL as libpq spells them: a private server with a certificate from
//! a CA made at test time, verified in full; `require`; and the wrong CA or
//! host name failing at once with one clear line.

use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use reqwest::StatusCode;

use crate::pg::TempPostgres;
use crate::support::*;

/// A CA certificate (PEM) and the means to sign with it.
pub(crate) fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A server certificate for `names`, signed by `issuer`: (cert, key) PEM.
pub(crate) fn server_cert(issuer: &Issuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "postgres");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Whether the pool's connection to the server is encrypted.
async fn connection_is_tls(server: &TestServer) -> bool {
    let row = sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(server.kp.store().pool())
        .await
        .unwrap();
    sqlx::Row::get::<bool, _>(&row, "ssl")
}

/// `keyport migrate` against `url`: (success, stderr, seconds taken).
fn migrate(url: &str) -> (bool, String, Duration) {
    let data_dir = temp_dir();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_keyport"))
        .args(["migrate", "--database-url", url, "--data-dir"])
        .arg(&data_dir)
        .env("KEYPORT_MASTER_KEY", "33".repeat(32))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn keyport_serves_from_postgres_over_tls() {
    let (ca_pem, issuer) = new_ca("Keyport test CA");
    let (cert, key) = server_cert(&issuer, &["localhost"]);
    let pg = TempPostgres::start_with_tls(&cert, &key);
    let files = temp_dir();
    let ca_file = files.join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let base = format!("postgres://postgres@localhost:{}/postgres", pg.port);

    // verify-full: the chain and the host name checked.
    let url = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        ca_file.display()
    );
    let server = TestServer::start_with(|c| c.database_url = Some(url.clone())).await;
    assert!(connection_is_tls(&server).await);
    let tokens = server.login().await;
    let (status, body) = server
        .refresh(tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(server);

    // require: encrypted, the certificate taken as it is (libpq's meaning).
    let server = TestServer::start_empty(|c| {
        c.database_url = Some(format!("{base}?sslmode=require"));
    })
    .await;
    assert!(connection_is_tls(&server).await);
    drop(server);

    // disable: plain.
    let server = TestServer::start_empty(|c| {
        c.database_url = Some(format!("{base}?sslmode=disable"));
    })
    .await;
    assert!(!connection_is_tls(&server).await);
    let _ = std::fs::remove_dir_all(&files);
}

#[tokio::test]
async fn the_wrong_ca_or_host_name_fails_at_once_with_one_clear_line() {
    let (right_ca, issuer) = new_ca("Keyport test CA");
    let (cert, key) = server_cert(&issuer, &["localhost"]);
    let pg = TempPostgres::start_with_tls(&cert, &key);
    let files = temp_dir();
    let (other_ca, _) = new_ca("Some other CA");
    let other_file = files.join("other-ca.pem");
    std::fs::write(&other_file, other_ca).unwrap();
    let right_file = files.join("ca.pem");
    std::fs::write(&right_file, right_ca).unwrap();

    let cases = [
        (
            format!(
                "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
                pg.port,
                other_file.display()
            ),
            "signed by an unknown authority",
        ),
        (
            format!(
                "postgres://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}",
                pg.port,
                right_file.display()
            ),
            "certificate not valid for name \"127.0.0.1\"",
        ),
        (
            format!(
                "postgres://postgres@localhost:{}/nowhere?sslmode=disable",
                pg.port
            ),
            "database \"nowhere\" does not exist",
        ),
    ];
    for (url, cause) in cases {
        let (ok, stderr, took) = migrate(&url);
        assert!(!ok, "{url} should not connect");
        assert!(took < Duration::from_secs(10), "it hung for {took:?}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line, not: {stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        assert!(lines[0].contains(cause), "{cause:?} not in: {stderr}");
        // No sentence is repeated along the chain.
        let parts: Vec<&str> = lines[0].split(": ").collect();
        for (i, part) in parts.iter().enumerate() {
            assert!(
                !parts[i + 1..].contains(part),
                "repeated {part:?} in {stderr}"
            );
        }
    }
    // And the right CA with the right name works from the same command.
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        pg.port,
        right_file.display()
    );
    let (ok, stderr, _) = migrate(&url);
    assert!(ok, "{stderr}");
    let _ = std::fs::remove_dir_all(&files);
}

#[tokio::test]
async fn keyport_migrates_the_machines_postgres_over_tls() {
    // The PostgreSQL every machine of this project runs (Debian's, `ssl = on`).
    let base = std::env::var("KEYPORT_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("KEYPORT_PG_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("kp_tls_{}", &keyport::crypto::random_id()[..12]);
    sqlx::any::install_default_drivers();
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&base)
        .await
        .expect("the machine's PostgreSQL on 127.0.0.1:5432");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let joiner = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{joiner}sslmode=require&options[search_path]={schema}");
    let (ok, stderr, _) = migrate(&url);
    let mut tls = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let row = sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut tls)
        .await
        .unwrap();
    let encrypted: bool = sqlx::Row::get(&row, "ssl");
    let tables: i64 = sqlx::Row::get(
        &sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = '{schema}'"
        )))
        .fetch_one(&mut tls)
        .await
        .unwrap(),
        "n",
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
    assert!(ok, "{stderr}");
    assert!(encrypted, "sslmode=require must encrypt");
    assert!(tables > 5, "the migrations ran over TLS: {tables} tables");
}
