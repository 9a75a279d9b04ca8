//! The SQLite writer: one task drains the waiting write jobs into one
//! `BEGIN IMMEDIATE … COMMIT` (group commit: one fsync for many requests),
//! each multi-statement job in a savepoint of its own, and delivers each
//! result only after the commit.

use std::sync::{Arc, Mutex};

use sqlx::Executor;
use tokio::sync::mpsc;

use super::{BoxFuture, Conn};

/// A job for the writer: runs inside the batch's transaction and hands back
/// whether it succeeded plus how to deliver its result once the batch commits.
pub(super) type Delivery = Box<dyn FnOnce(Option<String>) + Send>;
pub(super) type RunJob =
    Box<dyn for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, (bool, Delivery)> + Send>;

pub(super) struct Job {
    pub run: RunJob,
    /// Jobs with several writes run in a savepoint, so a failure rolls back
    /// only their own changes; a single statement is atomic by itself.
    pub savepoint: bool,
}

/// Most write jobs the SQLite writer puts into one transaction.
const MAX_BATCH: usize = 512;

pub(super) fn spawn_writer(
    mut conn: Conn,
    begin_failure: Arc<Mutex<Option<String>>>,
) -> mpsc::Sender<Job> {
    let (sender, mut jobs) = mpsc::channel::<Job>(4096);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
            run_batch(&mut conn, batch.drain(..), &begin_failure).await;
        }
    });
    sender
}

async fn run_batch(
    conn: &mut Conn,
    batch: impl Iterator<Item = Job>,
    begin_failure: &Mutex<Option<String>>,
) {
    use futures_util::FutureExt;
    let mut deliveries = Vec::new();
    let mut batch = batch.peekable();
    // IMMEDIATE takes the write lock up front, so an admin command writing
    // from another process makes us wait (busy_timeout) instead of failing.
    // Statements between jobs travel in one round trip to SQLite's thread.
    let first_savepoint = batch.peek().is_some_and(|job| job.savepoint);
    let begin = if first_savepoint {
        "BEGIN IMMEDIATE; SAVEPOINT job"
    } else {
        "BEGIN IMMEDIATE"
    };
    if let Err(e) = conn.execute(begin).await {
        // Dropping the jobs unblocks every waiter, who then reads the cause.
        tracing::error!(error = %e, "could not begin a write batch");
        *begin_failure.lock().expect("begin failure") = Some(e.to_string());
        drop(batch.collect::<Vec<_>>());
        let _ = conn.execute("ROLLBACK").await;
        return;
    }
    let mut jobs = 0;
    while let Some(job) = batch.next() {
        jobs += 1;
        // A panicking job must not take the writer (and every later write)
        // down with it: its changes are rolled back and its waiter told.
        let outcome = std::panic::AssertUnwindSafe((job.run)(conn))
            .catch_unwind()
            .await;
        let ok = match outcome {
            Ok((ok, deliver)) => {
                deliveries.push(deliver);
                ok
            }
            Err(_) => {
                tracing::error!("a write job panicked; its changes are rolled back");
                false
            }
        };
        let mut between = String::new();
        if job.savepoint {
            between.push_str(if ok {
                "RELEASE job;"
            } else {
                "ROLLBACK TO job; RELEASE job;"
            });
        }
        if batch.peek().is_some_and(|next| next.savepoint) {
            between.push_str(" SAVEPOINT job");
        }
        let outcome = match between.is_empty() {
            true => Ok(Default::default()),
            false => conn.execute(sqlx::AssertSqlSafe(between)).await,
        };
        if let Err(e) = outcome {
            tracing::error!(error = %e, "a savepoint statement failed");
        }
    }
    let committing = std::time::Instant::now();
    let commit = conn.execute("COMMIT").await;
    crate::telemetry::write_batch(jobs, committing.elapsed());
    let commit_error = match commit {
        Ok(_) => None,
        Err(e) => {
            let _ = conn.execute("ROLLBACK").await;
            tracing::error!(error = %e, "write batch did not commit");
            Some(e.to_string())
        }
    };
    for deliver in deliveries {
        deliver(commit_error.clone());
    }
}
