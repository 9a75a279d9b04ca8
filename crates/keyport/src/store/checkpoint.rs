//! WAL checkpoints beside the SQLite writer, instead of inside its commits.
//!
//! SQLite copies the WAL back into the database file (a checkpoint, ending
//! with an fsync of that file) inside whichever commit takes the WAL past
//! 1,000 pages. Under device starts that held the writer, and every request
//! waiting on its batch, for 5–10 ms about 40 times a second. The writer's
//! own connection turns that off (`wal_autocheckpoint = 0`) and counts the
//! WAL's pages after each commit instead (`sqlite3_wal_hook`). Every
//! [`CHECKPOINT_PAGES`] new pages it wakes a thread with a connection of its
//! own, which runs a PASSIVE checkpoint while the writer goes on committing
//! (then rests [`EVERY`], so a flood of writes makes fewer, larger
//! checkpoints, which copy a page many commits wrote once). A passive
//! checkpoint never waits for the writer, and readers see every commit
//! either way.
//!
//! The WAL starts over from its beginning only when a write begins with
//! every page already copied, which a checkpoint running beside a busy
//! writer seldom leaves. So once the WAL holds [`RESTART_PAGES`], the
//! writer copies what the thread has not ([`TAIL_PAGES`] at most; it wakes
//! the thread first if more are left) with a checkpoint of its own between
//! two batches, and its next batch starts the WAL over: the file stays
//! about as bounded as with SQLite's own checkpoints.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::time::Duration;

use super::reads::LocalWriter;

/// New WAL pages (4 KiB each) after which the checkpoint thread is woken:
/// SQLite's own default.
const CHECKPOINT_PAGES: i64 = 1000;

/// How long the checkpoint thread rests after a checkpoint, unless the
/// writer is waiting to start the WAL over.
const EVERY: Duration = Duration::from_millis(100);

/// WAL pages past which the writer starts the WAL over.
const RESTART_PAGES: i64 = 4000;

/// The most pages the writer copies itself, between two batches.
const TAIL_PAGES: i64 = 500;

thread_local! {
    /// The WAL's pages after the last commit on this thread's connection.
    static WAL_PAGES: Cell<i64> = const { Cell::new(0) };
}

fn note_wal_pages(_: &rusqlite::hooks::Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.set(i64::from(pages));
    Ok(())
}

/// What the writer and the checkpoint thread share.
#[derive(Default)]
struct Progress {
    /// WAL pages copied into the database file so far.
    copied: AtomicI64,
    /// The writer waits to start the WAL over: no rest after a checkpoint.
    restarting: AtomicBool,
}

pub(super) struct Checkpoints {
    /// Wakes the checkpoint thread; holds one wake at most.
    nudge: SyncSender<()>,
    thread: std::thread::Thread,
    progress: Arc<Progress>,
    /// The WAL's pages when the thread was last woken.
    nudged_at: i64,
}

impl Checkpoints {
    /// Starts the checkpoint thread, with its own connection to `path`.
    /// It ends when the writer drops this.
    pub(super) fn start(path: &Path) -> super::Result<Self> {
        let own = LocalWriter::open(path)?;
        let (nudge, nudges) = mpsc::sync_channel::<()>(1);
        let progress = Arc::new(Progress::default());
        let shared = progress.clone();
        let thread = std::thread::Builder::new()
            .name("keyport-checkpoint".into())
            .spawn(move || {
                while nudges.recv().is_ok() {
                    match checkpoint(&own.conn()) {
                        Ok(copied) => shared.copied.store(copied, Ordering::Relaxed),
                        Err(e) => tracing::warn!(error = %e, "a WAL checkpoint failed"),
                    }
                    if !shared.restarting.load(Ordering::Relaxed) {
                        std::thread::park_timeout(EVERY);
                    }
                }
            })
            .map_err(|e| super::Error::Invalid(format!("could not start checkpoints: {e}")))?;
        Ok(Self {
            nudge,
            thread: thread.thread().clone(),
            progress,
            nudged_at: 0,
        })
    }

    /// Has the writer's connection, on the writer's thread, count the WAL's
    /// pages at each commit.
    pub(super) fn watch(writer: &rusqlite::Connection) {
        writer.wal_hook(Some(note_wal_pages));
    }

    /// After each batch on the writer's own connection, on its thread.
    pub(super) fn committed(&mut self, writer: &rusqlite::Connection) {
        let pages = WAL_PAGES.get();
        if pages < self.nudged_at {
            // The WAL started over.
            self.nudged_at = 0;
            self.progress.copied.store(0, Ordering::Relaxed);
            self.progress.restarting.store(false, Ordering::Relaxed);
        }
        if pages >= RESTART_PAGES {
            if pages - self.progress.copied.load(Ordering::Relaxed) <= TAIL_PAGES {
                // Should the thread be mid-way, this finds it busy and the
                // next batch tries again.
                if let Err(e) = checkpoint(writer) {
                    tracing::warn!(error = %e, "a WAL checkpoint failed");
                }
                return;
            }
            self.progress.restarting.store(true, Ordering::Relaxed);
            self.wake(pages);
            self.thread.unpark();
        } else if pages - self.nudged_at >= CHECKPOINT_PAGES {
            self.wake(pages);
        }
    }

    fn wake(&mut self, pages: i64) {
        let _ = self.nudge.try_send(());
        self.nudged_at = pages;
    }
}

/// Runs a PASSIVE checkpoint; the WAL pages copied into the database file
/// so far.
fn checkpoint(conn: &rusqlite::Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(2))
}

#[cfg(test)]
mod tests {
    use super::super::Writes;
    use super::super::reads::{self, Arg};
    use super::super::tests::temp_store;

    const MIB: u64 = 1 << 20;

    /// Sixteen writers at once, 12,000 rows of about a page each: with no
    /// checkpoints, or with the WAL never started over, the WAL would end
    /// up holding about 48 MiB; with SQLite's own checkpoints, about 4.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steady_writes_reach_the_database_file_and_the_wal_stays_bounded() {
        let (store, dir) = temp_store().await;
        let writers = (0..16).map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..750 {
                    let name = format!("row-{writer}-{n}");
                    store
                        .write_either(Writes::One, move |db| {
                            Box::pin(async move {
                                let value = "x".repeat(3000);
                                let sql = "INSERT INTO settings (name, value) VALUES ($1, $2)";
                                let args = [Arg::Text(&name), Arg::Text(&value)];
                                reads::execute(db, sql, &args).await
                            })
                        })
                        .await
                        .unwrap();
                }
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.unwrap();
        }
        // The checkpoint thread copies what the last commits left.
        let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        for _ in 0..50 {
            if size("keyport.db") > 36 * MIB {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let (database, wal) = (size("keyport.db"), size("keyport.db-wal"));
        assert!(
            database > 36 * MIB,
            "the rows are in the database file: {database}"
        );
        assert!(wal < 20 * MIB, "the WAL was started over: {wal} bytes");
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
