//! The SQLite writer: one task drains the waiting write jobs into one
//! `BEGIN IMMEDIATE … COMMIT` (group commit: one fsync for many requests),
//! each multi-statement job in a savepoint of its own (on the writer's own
//! connection, unless it is alone in its transaction), and delivers each
//! result only after the commit.

use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use sqlx::Executor;
use tokio::sync::{mpsc, oneshot};

use super::reads::{LocalWriter, Source};
use super::{BoxFuture, Conn};

/// A job for the writer: runs inside the batch's transaction and hands back
/// whether it succeeded plus how to deliver its result once the batch commits.
pub(super) type Delivery = Box<dyn FnOnce(Option<String>) + Send>;
pub(super) type RunJob =
    Box<dyn for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, (bool, Delivery)> + Send>;
/// A job written against [`Source`], which can also run on the writer's own
/// connection, statement by statement on its thread.
pub(super) type EitherJob =
    Box<dyn for<'c> FnOnce(Source<'c>) -> BoxFuture<'c, (bool, Delivery)> + Send>;

pub(super) enum Run {
    Sqlx(RunJob),
    Either(EitherJob),
}

pub(super) struct Job {
    pub run: Run,
    /// Jobs with several writes run in a savepoint, so a failure rolls back
    /// only their own changes; a single statement is atomic by itself.
    pub savepoint: bool,
}

/// Most write jobs the SQLite writer puts into one transaction.
const MAX_BATCH: usize = 512;

/// Jobs for the writer's own connection (each with whether it needs a
/// savepoint), and where to say they are done.
type LocalBatch = (Vec<(EitherJob, bool)>, oneshot::Sender<()>);

/// Starts the writer. With `local` (a file database), jobs written against
/// [`Source`] run on that connection in a thread of its own, one crossing
/// per batch instead of one per statement; the others, in a batch of their
/// own after them, on sqlx's connection.
pub(super) fn spawn_writer(
    mut conn: Conn,
    local: Option<LocalWriter>,
    begin_failure: Arc<Mutex<Option<String>>>,
) -> std::io::Result<mpsc::Sender<Job>> {
    let local = match local {
        Some(writer) => {
            let (sender, batches) = std::sync::mpsc::channel::<LocalBatch>();
            let failure = begin_failure.clone();
            std::thread::Builder::new()
                .name("keyport-writer".into())
                .spawn(move || {
                    while let Ok((jobs, done)) = batches.recv() {
                        run_local_batch(&writer, jobs, &failure);
                        let _ = done.send(());
                    }
                })?;
            Some(sender)
        }
        None => None,
    };
    let (sender, mut jobs) = mpsc::channel::<Job>(4096);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let mut sqlx_jobs = Vec::with_capacity(batch.len());
            let mut local_jobs = Vec::new();
            for Job { run, savepoint } in batch.drain(..) {
                match run {
                    Run::Either(run) if local.is_some() => local_jobs.push((run, savepoint)),
                    run => sqlx_jobs.push(Job { run, savepoint }),
                }
            }
            if let (false, Some(local)) = (local_jobs.is_empty(), &local) {
                let (done, finished) = oneshot::channel();
                if local.send((local_jobs, done)).is_ok() {
                    let _ = finished.await;
                }
            }
            if !sqlx_jobs.is_empty() {
                run_batch(&mut conn, sqlx_jobs.into_iter(), &begin_failure).await;
            }
        }
    });
    Ok(sender)
}

/// One transaction of jobs on the writer's own connection, run on its
/// thread: every statement of a job runs as the job's future is first
/// polled, so no job waits on anything but the database.
fn run_local_batch(
    writer: &LocalWriter,
    jobs: Vec<(EitherJob, bool)>,
    begin_failure: &Mutex<Option<String>>,
) {
    let statements = |sql: &str| writer.conn().execute_batch(sql);
    if let Err(e) = statements("BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "could not begin a write batch");
        *begin_failure.lock().expect("begin failure") = Some(e.to_string());
        return;
    }
    let count = jobs.len();
    // A job alone in its transaction needs no savepoint: if it fails, the
    // whole transaction rolls back, and it holds nothing else. (A savepoint
    // copies each page the job changes into the sub-journal first.)
    let alone = count == 1;
    let mut failed_alone = false;
    let mut deliveries = Vec::with_capacity(count);
    for (run, savepoint) in jobs {
        let savepoint = savepoint && !alone;
        if savepoint && let Err(e) = statements("SAVEPOINT job") {
            tracing::error!(error = %e, "a savepoint statement failed");
        }
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(Source::Writing(writer)).now_or_never()
        }));
        let ok = match polled {
            Ok(Some((ok, deliver))) => {
                deliveries.push(deliver);
                ok
            }
            // Dropping the job tells its waiter it did not commit.
            Ok(None) => {
                tracing::error!("a write job waited on something other than the database");
                false
            }
            Err(_) => {
                tracing::error!("a write job panicked; its changes are rolled back");
                false
            }
        };
        failed_alone = alone && !ok;
        let undo = match (savepoint, ok) {
            (false, _) => None,
            (true, true) => Some("RELEASE job"),
            (true, false) => Some("ROLLBACK TO job; RELEASE job"),
        };
        if let Some(Err(e)) = undo.map(statements) {
            tracing::error!(error = %e, "a savepoint statement failed");
        }
    }
    let committing = std::time::Instant::now();
    let commit = if failed_alone {
        statements("ROLLBACK")
    } else {
        statements("COMMIT")
    };
    crate::telemetry::write_batch(count, committing.elapsed());
    let commit_error = match commit {
        Ok(()) => None,
        Err(e) => {
            let _ = statements("ROLLBACK");
            tracing::error!(error = %e, "write batch did not commit");
            Some(e.to_string())
        }
    };
    for deliver in deliveries {
        deliver(commit_error.clone());
    }
}

async fn run_batch(
    conn: &mut Conn,
    batch: impl Iterator<Item = Job>,
    begin_failure: &Mutex<Option<String>>,
) {
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
        let run = match job.run {
            Run::Sqlx(run) => run(conn),
            Run::Either(run) => run(Source::Conn(conn)),
        };
        let outcome = std::panic::AssertUnwindSafe(run).catch_unwind().await;
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

#[cfg(test)]
mod tests {
    use super::super::tests::temp_store;
    use super::super::{Writes, reads, settings};

    #[tokio::test]
    async fn a_failing_or_panicking_job_rolls_back_alone() {
        let (store, dir) = temp_store().await;
        let set = |name: &'static str| {
            let store = store.clone();
            async move {
                store
                    .write(move |c| Box::pin(async move { settings::set(c, name, "v").await }))
                    .await
            }
        };
        // Concurrent jobs share a batch; the bad ones must not spoil it.
        let failing = store.write(|c| {
            Box::pin(async move {
                settings::set(&mut *c, "half-done", "v").await?;
                sqlx::query("INSERT INTO no_such_table VALUES (1)")
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        });
        let panicking = store.write(|c| {
            Box::pin(async move {
                settings::set(&mut *c, "before-panic", "v").await?;
                panic!("a bug in a job");
                #[allow(unreachable_code)]
                Ok(())
            })
        });
        let (a, b, c, d) = tokio::join!(set("first"), failing, panicking, set("last"));
        assert!(a.is_ok() && d.is_ok());
        assert!(b.is_err() && c.is_err());
        for (name, expected) in [
            ("first", true),
            ("last", true),
            ("half-done", false),
            ("before-panic", false),
        ] {
            assert_eq!(
                settings::get(store.pool(), name).await.unwrap().is_some(),
                expected,
                "{name}"
            );
        }
        // The writer is still alive.
        set("after").await.unwrap();
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn jobs_on_the_writers_own_connection_roll_back_alone_too() {
        use reads::{Arg, Source, execute};
        let (store, dir) = temp_store().await;
        const SET: &str = "INSERT INTO settings (name, value) VALUES ($1, 'v')";
        let either = |name: &'static str, then: Option<&'static str>| {
            let store = store.clone();
            async move {
                store
                    .write_either(Writes::Many, move |mut db: Source<'_>| {
                        Box::pin(async move {
                            execute(db.reborrow(), SET, &[Arg::Text(name)]).await?;
                            match then {
                                Some("panic") => panic!("a bug in a job"),
                                Some(sql) => execute(db, sql, &[]).await.map(|_| ()),
                                None => Ok(()),
                            }
                        })
                    })
                    .await
            }
        };
        let sqlx_job =
            store.write(|c| Box::pin(async move { settings::set(c, "sqlx", "v").await }));
        // One batch: two good jobs, one failing after its first write, one
        // panicking after it, and a job on sqlx's connection beside them.
        let (a, b, c, d, e) = tokio::join!(
            either("first", None),
            either("half-done", Some("INSERT INTO no_such_table VALUES (1)")),
            either("before-panic", Some("panic")),
            sqlx_job,
            either("last", None),
        );
        assert!(a.is_ok() && d.is_ok() && e.is_ok(), "{a:?} {d:?} {e:?}");
        assert!(b.is_err() && c.is_err());
        for (name, expected) in [
            ("first", true),
            ("last", true),
            ("sqlx", true),
            ("half-done", false),
            ("before-panic", false),
        ] {
            let found = settings::get(store.pool(), name).await.unwrap();
            assert_eq!(found.is_some(), expected, "{name}");
        }
        // The writer is still alive, and a duplicate is a unique violation.
        either("after", None).await.unwrap();
        assert!(
            either("after", None)
                .await
                .unwrap_err()
                .is_unique_violation()
        );
        // A job alone in its batch runs without a savepoint: when it fails
        // after a write, or panics, the transaction rolls back instead.
        let failed = either("alone", Some("INSERT INTO no_such_table VALUES (1)")).await;
        assert!(failed.is_err());
        assert!(either("alone-panic", Some("panic")).await.is_err());
        for name in ["alone", "alone-panic"] {
            let found = settings::get(store.pool(), name).await.unwrap();
            assert!(found.is_none(), "{name} rolled back");
        }
        either("alone", None).await.unwrap();
        assert!(
            settings::get(store.pool(), "alone")
                .await
                .unwrap()
                .is_some()
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
