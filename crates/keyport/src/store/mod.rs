//! The one store API. SQLite (the embedded default) and PostgreSQL sit
//! behind it through `sqlx::Any`, and every query is SQL both engines accept:
//! TEXT ids, integer unix times, `$n` placeholders, `ON CONFLICT` and
//! `RETURNING`. One-time transitions (code redemption, token rotation) are
//! conditional `UPDATE`s whose row count decides the winner, so they hold
//! under any concurrency and across instances.
//!
//! Writes go through [`Store::write`]. On SQLite a single writer task batches
//! the waiting jobs into one transaction (group commit: one fsync for many
//! requests, each job isolated in a savepoint); on PostgreSQL each job is its
//! own transaction on the pool. Reads go straight to the pool.

pub mod api_keys;
pub mod audit;
pub mod browser;
pub mod clients;
pub mod codes;
pub mod device;
pub mod directory;
pub mod keys;
pub mod limits;
pub mod lockout;
pub mod members;
pub mod retention;
pub mod sessions;
pub mod settings;
pub mod two_step;

mod migrations;
mod polls;
pub mod reads;
mod trail;
mod writer;

use migrations::migrator;
use writer::{Delivery, EitherJob, Job, Run, RunJob, spawn_writer};

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Executor};
use tokio::sync::{mpsc, oneshot};

/// A connection inside a write transaction.
pub type Conn = AnyConnection;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store failure. Each message already holds its whole cause, so the
/// variants expose no `source()`: an error chain (`{:#}`) prints every
/// sentence once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {}", describe(.0))]
    Db(sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("the transaction did not commit: {0}")]
    Commit(String),
    #[error("the store is shut down")]
    Closed,
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported database URL {0:?}: use sqlite:// or postgres://")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Db(e)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e)
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Migrate(e)
    }
}

/// sqlx's message for an error, with rustls's terse certificate verdicts
/// put in the words an operator searches for.
fn describe(e: &sqlx::Error) -> String {
    let text = e.to_string();
    const PLAIN: [(&str, &str); 3] = [
        (
            "invalid peer certificate: UnknownIssuer",
            "the server's certificate is signed by an unknown authority \
             (name the CA that signed it with sslrootcert=FILE in the URL)",
        ),
        (
            "invalid peer certificate: Expired",
            "the server's certificate has expired",
        ),
        (
            "invalid peer certificate: BadSignature",
            "the server's certificate has a bad signature",
        ),
    ];
    PLAIN
        .iter()
        .find(|(terse, _)| text.contains(terse))
        .map_or(text.clone(), |(terse, plain)| text.replace(terse, plain))
}

impl Error {
    /// True for a unique-constraint violation (a duplicate id, slug, code).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Db(sqlx::Error::Database(e)) => e.is_unique_violation(),
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// How many write statements a job makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    One,
    Many,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    writer: Option<mpsc::Sender<Job>>,
    /// Why the writer last failed to begin a batch (another process held
    /// the database's write lock past the busy timeout, say), so its
    /// waiters learn the cause rather than "shut down".
    begin_failure: Arc<Mutex<Option<String>>>,
    /// Audit rows queued off the response's path ([`Store::append_audit`]).
    trail: Arc<trail::Trail>,
    /// Pending codes' poll times, held in memory ([`Store::remember_poll`]).
    polls: Arc<polls::PollTimes>,
    /// SQLite's in-place reads for the hottest paths ([`reads`]).
    reader: Option<Arc<reads::Reader>>,
}

/// WAL pages after which a commit copies the WAL back into the database
/// file (SQLite's default is 1,000). A page that many commits wrote, such as
/// an index's last page or a hot session's, is copied once per checkpoint, so
/// fewer, larger checkpoints copy less: device starts and refresh rotations
/// went up 15–20 %, while the commit that checkpoints holds its batch about
/// four times as long (their p99 10 → 17 ms at c16, `bench/run.sh`). The
/// WAL file grows to about 16 MiB.
const WAL_CHECKPOINT: &str = "PRAGMA wal_autocheckpoint = 4000;";

impl Store {
    /// Opens the database named by `url`, or the SQLite file in `data_dir`
    /// when there is none, and applies pending migrations.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let url = match url {
            Some(url) => url.to_string(),
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("keyport.db").display()
            ),
        };
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            return Err(Error::UnsupportedUrl(redact_url(&url)));
        };
        let reader = match engine {
            Engine::Sqlite => local_file(&url)?.map(|path| Arc::new(reads::Reader::new(path))),
            Engine::Postgres => None,
        };
        let options = AnyConnectOptions::from_str(&url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let pool_options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL lets readers run beside the writer; FULL makes every
                        // acknowledged commit durable.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                        )
                        .await?;
                        conn.execute(WAL_CHECKPOINT).await?;
                    }
                    Ok(())
                })
            });
        let pool = match engine {
            // An in-process SQLite connection cannot go stale the way a
            // network one can: no ping (a round trip to its thread) before
            // every use.
            Engine::Sqlite => pool_options
                .max_connections(8)
                .min_connections(1)
                .test_before_acquire(false),
            Engine::Postgres => pool_options.max_connections(16).min_connections(1),
        }
        .connect_with(options)
        .await?;
        migrator(engine).run(&pool).await?;
        let begin_failure = Arc::new(Mutex::new(None));
        let writer = match engine {
            Engine::Sqlite => {
                // SQLite's default 2 MiB page cache: a larger one costs every
                // commit a walk of its hash table (`pcache1TruncateUnsafe`,
                // 13 % of the core on device starts at 64 MiB), and pages
                // it misses come from the OS's cache, which housekeeping's
                // deletes showed was as fast (bench/README.md).
                let conn = pool.acquire().await?.detach();
                let local = match &reader {
                    Some(reader) => Some(reads::LocalWriter::open(reader.path())?),
                    None => None,
                };
                let writer = spawn_writer(conn, local, begin_failure.clone())
                    .map_err(|e| Error::Invalid(format!("could not start the writer: {e}")))?;
                Some(writer)
            }
            Engine::Postgres => None,
        };
        Ok(Self {
            pool,
            engine,
            writer,
            begin_failure,
            trail: Arc::new(trail::Trail::new()),
            polls: Arc::default(),
            reader,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Runs `job` in a write transaction and returns its result once the
    /// transaction has committed. A job that returns `Err` is rolled back
    /// alone; what it returns in `Ok` (domain refusals included) commits.
    pub async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.write_as(Writes::Many, job).await
    }

    /// Like [`Store::write`] for a job that makes at most one write
    /// statement (reads are free): it needs no savepoint of its own, which
    /// saves a round trip on the hottest paths.
    pub async fn write_one<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.write_as(Writes::One, job).await
    }

    /// [`Store::write`] or [`Store::write_one`], chosen at run time.
    pub async fn write_as<T, F>(&self, writes: Writes, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let Some(writer) = &self.writer else {
            // A task of its own: if the HTTP client goes away, the request's
            // future is dropped, but the transaction still commits or rolls
            // back; it never leaves a pooled connection mid-transaction.
            let pool = self.pool.clone();
            let task = tokio::spawn(async move {
                let mut tx = pool.begin().await?;
                let value = job(&mut tx).await?;
                tx.commit().await?;
                Ok(value)
            });
            return task.await.map_err(|_| Error::Closed)?;
        };
        let (done, result) = oneshot::channel();
        let run: RunJob =
            Box::new(move |conn| Box::pin(async move { delivery(job(conn).await, done) }));
        self.submit(writer, Run::Sqlx(run), writes, result).await
    }

    /// [`Store::write_as`] for a job written against [`reads::Source`],
    /// whose store calls all take one: on a SQLite file it runs on the
    /// writer's own connection, without crossing to sqlx's thread for each
    /// statement.
    pub async fn write_either<T, F>(&self, writes: Writes, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(reads::Source<'c>) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let Some(writer) = &self.writer else {
            return self
                .write_as(writes, move |conn| job(reads::Source::Conn(conn)))
                .await;
        };
        let (done, result) = oneshot::channel();
        let run: EitherJob =
            Box::new(move |source| Box::pin(async move { delivery(job(source).await, done) }));
        self.submit(writer, Run::Either(run), writes, result).await
    }

    async fn submit<T>(
        &self,
        writer: &mpsc::Sender<Job>,
        run: Run,
        writes: Writes,
        result: oneshot::Receiver<Result<T>>,
    ) -> Result<T> {
        let savepoint = writes == Writes::Many;
        writer
            .send(Job { run, savepoint })
            .await
            .map_err(|_| Error::Closed)?;
        result.await.map_err(|_| {
            match self.begin_failure.lock().expect("begin failure").clone() {
                Some(cause) => Error::Commit(cause),
                None => Error::Closed,
            }
        })?
    }

    /// Writes a consistent copy of a SQLite database to `to`, an empty or
    /// missing file, while writers carry on (`VACUUM INTO` reads one
    /// snapshot).
    pub async fn backup_to(&self, to: &Path) -> Result<()> {
        let target = to
            .to_str()
            .ok_or_else(|| Error::Invalid(format!("{} is not a UTF-8 path", to.display())))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// True when the database answers; `/readyz` asks this.
    pub async fn ping(&self) -> bool {
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Ok(_))
        )
    }

    /// Waits (ten seconds at most) for the queued audit rows to be
    /// written, then closes the pool.
    pub async fn close(&self) {
        let flushed = self.trail.room.acquire_many(trail::QUEUED as u32);
        if tokio::time::timeout(Duration::from_secs(10), flushed)
            .await
            .is_err()
        {
            tracing::error!("queued audit rows were still unwritten at shutdown");
        }
        if let Some(reader) = &self.reader {
            reader.close();
        }
        self.pool.close().await;
    }
}

/// The file a SQLite URL names; `None` for an in-memory database, which
/// another connection could not open.
fn local_file(url: &str) -> Result<Option<std::path::PathBuf>> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(None);
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
    Ok(Some(options.get_filename().to_path_buf()))
}

/// Whether a job's outcome lets its batch go on, and how to hand it to its
/// waiter once the batch has committed (or failed to).
fn delivery<T: Send + 'static>(
    outcome: Result<T>,
    done: oneshot::Sender<Result<T>>,
) -> (bool, Delivery) {
    let ok = outcome.is_ok();
    let deliver: Delivery = Box::new(move |commit_error| {
        let _ = done.send(match commit_error {
            Some(message) if ok => Err(Error::Commit(message)),
            _ => outcome,
        });
    });
    (ok, deliver)
}

/// Hides the password part of a database URL.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("[redacted]"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Reads an optional text column.
pub(crate) fn opt_text(row: &sqlx::any::AnyRow, column: &str) -> Result<Option<String>> {
    use sqlx::Row;
    Ok(row.try_get::<Option<String>, _>(column)?)
}

/// Splits a space-separated list column.
pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) async fn temp_store() -> (Store, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("keyport-store-{}", crate::crypto::random_id()));
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(None, &dir).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn queued_audit_rows_are_all_written_by_close() {
        let (store, dir) = temp_store().await;
        // More than one statement's and one job's worth, from many callers.
        let rows = 1100;
        let appends = (0..rows).map(|n| {
            let store = store.clone();
            async move {
                let event = audit::AuditEvent {
                    id: format!("{n:013x}"),
                    at_ms: n,
                    event: "token.issue".into(),
                    outcome: "success".into(),
                    actor: None,
                    client_id: Some("svc".into()),
                    session_id: None,
                    workspace_id: None,
                    target: None,
                    ip: Some("127.0.0.1".into()),
                    detail: Some(serde_json::json!({ "n": n })),
                };
                store.append_audit(event).await;
            }
        });
        futures_util::future::join_all(appends).await;
        store.close().await;
        let store = Store::open(None, &dir).await.unwrap();
        let (count, details): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(DISTINCT id), COUNT(DISTINCT detail) FROM audit_events \
             WHERE event = 'token.issue' AND client_id = 'svc'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!((count, details), (rows, rows));
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
