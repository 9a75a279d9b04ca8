//! The ceiling for bench/compare.sh: Keyport's hot paths reduced to the
//! work none of them can skip. Each request is parsed, and then only
//! - device start: one random value, its hashes, one row inserted;
//! - pending poll: one hash, one row updated (the poll time `slow_down` needs);
//! - client credentials: one hash compared in constant time, one EdDSA signature;
//! - refresh: one hash, one row rotated and one inserted, one signature;
//! - userinfo: one EdDSA signature verified.
//!
//! Rows go to SQLite (WAL, `synchronous = FULL`, as Keyport runs it) through
//! one writer thread that commits whatever has queued as one transaction,
//! the cheapest durable write there is. No audit, no limits, no sessions,
//! no checks beyond these: not a server to use, a bound to measure against.
//!
//! Usage: ceiling PORT DATA_DIR (loopback only).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// One write: SQL and its text parameters; the reply is the rows changed.
type Job = (Vec<(&'static str, Vec<String>)>, oneshot::Sender<usize>);

struct Ceiling {
    key: Ed25519KeyPair,
    public: Vec<u8>,
    rng: SystemRandom,
    writes: mpsc::Sender<Job>,
    cc_secret_hash: Vec<u8>,
    cc_secret: String,
}

type Shared = Arc<Ceiling>;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn random(c: &Ceiling, n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    c.rng.fill(&mut bytes).unwrap();
    bytes
}

fn hash(text: &str) -> String {
    B64.encode(digest(&SHA256, text.as_bytes()))
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, axum::Json(json!({ "error": code }))).into_response()
}

fn tokens(body: Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// The writer: blocks for one job, takes every job queued behind it, and
/// commits them all in one transaction.
fn writer(path: std::path::PathBuf, jobs: mpsc::Receiver<Job>) {
    let mut db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS devices (code_hash TEXT PRIMARY KEY, user_code_hash TEXT NOT NULL,
             client_id TEXT NOT NULL, scope TEXT NOT NULL, expires_at INTEGER NOT NULL, polled_at INTEGER);
         CREATE TABLE IF NOT EXISTS refresh (hash TEXT PRIMARY KEY, rotated INTEGER NOT NULL DEFAULT 0);",
    )
    .unwrap();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        let tx = db.transaction().unwrap();
        let mut replies = Vec::with_capacity(batch.len());
        for (statements, reply) in batch {
            let mut changed = 0;
            for (sql, params) in statements {
                let mut stmt = tx.prepare_cached(sql).unwrap();
                changed += stmt.execute(rusqlite::params_from_iter(params)).unwrap();
            }
            replies.push((reply, changed));
        }
        tx.commit().unwrap();
        for (reply, changed) in replies {
            let _ = reply.send(changed);
        }
    }
}

async fn write(c: &Ceiling, statements: Vec<(&'static str, Vec<String>)>) -> usize {
    let (tx, rx) = oneshot::channel();
    c.writes.send((statements, tx)).unwrap();
    rx.await.unwrap()
}

fn sign(c: &Ceiling, claims: Value) -> String {
    let header = B64.encode(br#"{"alg":"EdDSA","typ":"at+jwt","kid":"ceiling"}"#);
    let payload = B64.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let signature = B64.encode(c.key.sign(input.as_bytes()));
    format!("{input}.{signature}")
}

fn access_token(c: &Ceiling, sub: &str) -> String {
    let now = now();
    let jti = B64.encode(random(c, 16));
    sign(
        c,
        json!({"iss": "ceiling", "sub": sub, "aud": "https://api.example.com", "client_id": "kp",
               "scope": "openid offline_access", "iat": now, "exp": now + 900, "jti": jti}),
    )
}

async fn device_start(State(c): State<Shared>, body: Bytes) -> Response {
    let params = form(&body);
    let (Some(client), scope) = (params.get("client_id"), params.get("scope")) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let bytes = random(&c, 40);
    let device_code = B64.encode(&bytes[..32]);
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let user: String = bytes[32..]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    let insert = "INSERT INTO devices (code_hash, user_code_hash, client_id, scope, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)";
    let row = vec![
        hash(&device_code),
        hash(&user),
        client.clone(),
        scope.cloned().unwrap_or_default(),
        (now() + 900).to_string(),
    ];
    write(&c, vec![(insert, row)]).await;
    let user_code = format!("{}-{}", &user[..4], &user[4..]);
    tokens(json!({
        "device_code": device_code, "user_code": user_code,
        "verification_uri": "http://127.0.0.1/device",
        "verification_uri_complete": format!("http://127.0.0.1/device?user_code={user_code}"),
        "expires_in": 900, "interval": 5,
    }))
}

async fn token(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let params = form(&body);
    match params.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            let Some(code) = params.get("device_code") else {
                return error(StatusCode::BAD_REQUEST, "invalid_request");
            };
            let update = "UPDATE devices SET polled_at = ?2 WHERE code_hash = ?1";
            match write(&c, vec![(update, vec![hash(code), now().to_string()])]).await {
                0 => error(StatusCode::BAD_REQUEST, "invalid_grant"),
                _ => error(StatusCode::BAD_REQUEST, "authorization_pending"),
            }
        }
        Some("client_credentials") => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|v| STANDARD.decode(v).ok())
                .and_then(|v| String::from_utf8(v).ok());
            let Some((client, secret)) = presented.as_deref().and_then(|p| p.split_once(':')) else {
                return error(StatusCode::UNAUTHORIZED, "invalid_client");
            };
            let given = digest(&SHA256, secret.as_bytes());
            let same = aws_lc_rs::constant_time::verify_slices_are_equal(
                given.as_ref(),
                &c.cc_secret_hash,
            );
            if client != "bench-cc" || same.is_err() {
                return error(StatusCode::UNAUTHORIZED, "invalid_client");
            }
            let token = access_token(&c, client);
            tokens(json!({"access_token": token, "token_type": "Bearer", "expires_in": 900}))
        }
        Some("refresh_token") => {
            let Some(presented) = params.get("refresh_token") else {
                return error(StatusCode::BAD_REQUEST, "invalid_request");
            };
            let next = format!("ceil_rt_{}", B64.encode(random(&c, 32)));
            let rotate = "UPDATE refresh SET rotated = 1 WHERE hash = ?1 AND rotated = 0";
            let insert = "INSERT INTO refresh (hash) VALUES (?1)";
            let changed = write(
                &c,
                vec![(rotate, vec![hash(presented)]), (insert, vec![hash(&next)])],
            )
            .await;
            if changed != 2 {
                return error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            let access = access_token(&c, "user");
            tokens(json!({"access_token": access, "refresh_token": next, "token_type": "Bearer",
                          "expires_in": 900, "scope": "openid offline_access"}))
        }
        _ => error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

async fn userinfo(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let verified = token.and_then(|t| {
        let (input, signature) = t.rsplit_once('.')?;
        let signature = B64.decode(signature).ok()?;
        UnparsedPublicKey::new(&ED25519, &c.public)
            .verify(input.as_bytes(), &signature)
            .ok()?;
        let payload = B64.decode(input.split('.').nth(1)?).ok()?;
        serde_json::from_slice::<Value>(&payload).ok()
    });
    match verified {
        Some(claims) if claims["exp"].as_u64().is_some_and(|exp| exp > now()) => {
            axum::Json(json!({"sub": claims["sub"]})).into_response()
        }
        _ => error(StatusCode::UNAUTHORIZED, "invalid_token"),
    }
}

/// The bench's set-up (never measured): N refresh tokens, an access token
/// and the confidential client's `Authorization` header.
async fn fixtures(State(c): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let count: usize = q.get("refresh").and_then(|n| n.parse().ok()).unwrap_or(0);
    let refresh: Vec<String> = (0..count)
        .map(|_| format!("ceil_rt_{}", B64.encode(random(&c, 32))))
        .collect();
    let insert = "INSERT INTO refresh (hash) VALUES (?1)";
    let rows = refresh.iter().map(|t| (insert, vec![hash(t)])).collect();
    write(&c, rows).await;
    let basic = STANDARD.encode(format!("bench-cc:{}", c.cc_secret));
    axum::Json(json!({
        "refresh": refresh, "access": access_token(&c, "user"),
        "cc_authorization": format!("Basic {basic}"),
    }))
    .into_response()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(18201);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir).unwrap();
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let (writes, jobs) = mpsc::channel();
    let db = dir.join("ceiling.db");
    std::thread::spawn(move || writer(db, jobs));
    let mut secret = [0u8; 24];
    rng.fill(&mut secret).unwrap();
    let cc_secret = B64.encode(secret);
    let state = Arc::new(Ceiling {
        public: key.public_key().as_ref().to_vec(),
        key,
        rng,
        writes,
        cc_secret_hash: digest(&SHA256, cc_secret.as_bytes()).as_ref().to_vec(),
        cc_secret,
    });
    let app = Router::new()
        .route("/oauth/device_authorization", post(device_start))
        .route("/oauth/token", post(token))
        .route("/oauth/userinfo", get(userinfo))
        .route("/bench/fixtures", get(fixtures))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    eprintln!("ceiling http://127.0.0.1:{port} ready");
    axum::serve(listener, app).await.unwrap();
}
