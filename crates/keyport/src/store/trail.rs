//! Audit rows written off the response's path ([`Store::append_audit`]).
//!
//! A row is queued here and the caller goes on. One flusher task at a time
//! lets rows gather for [`LINGER`], takes everything queued and inserts it
//! as one write job (on SQLite's writer's own connection, see
//! [`Store::write_either`]); rows queued meanwhile go in the next. A crash loses at most the rows of that moment. At most
//! [`QUEUED`] rows wait at once: past that the caller waits for room, so a
//! flood queues nothing without bound. [`Store::close`] waits until every
//! queued row has been written.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::audit::{self, AuditEvent};
use super::{Store, Writes};

/// Rows queued at once; the next caller waits for a flush.
pub(super) const QUEUED: usize = 4096;

/// Rows taken into one write job.
const ROWS_PER_JOB: usize = 512;

/// How long a flusher lets rows gather before it takes them: under load,
/// one commit for many rows rather than one for every few.
const LINGER: Duration = Duration::from_millis(10);

pub(super) struct Trail {
    queue: Mutex<Queue>,
    /// One permit per row that may still be queued.
    pub(super) room: Semaphore,
}

#[derive(Default)]
struct Queue {
    rows: Vec<AuditEvent>,
    /// A flusher task is running and will take what is queued.
    flushing: bool,
}

impl Trail {
    pub(super) fn new() -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            room: Semaphore::new(QUEUED),
        }
    }

    /// Queues `event`; true when the caller must start a flusher.
    fn push(&self, event: AuditEvent) -> bool {
        let mut queue = self.queue.lock().expect("audit queue lock");
        queue.rows.push(event);
        !std::mem::replace(&mut queue.flushing, true)
    }

    /// Up to a job's worth of queued rows, or none (and the flusher stops).
    fn take(&self) -> Vec<AuditEvent> {
        let mut queue = self.queue.lock().expect("audit queue lock");
        let rows = if queue.rows.len() <= ROWS_PER_JOB {
            std::mem::take(&mut queue.rows)
        } else {
            queue.rows.drain(..ROWS_PER_JOB).collect()
        };
        if rows.is_empty() {
            queue.flushing = false;
        }
        rows
    }
}

impl Store {
    /// Queues an audit row for a record whose loss in a crash loses nothing
    /// a client was told (the row of a self-contained JWT), and returns
    /// without waiting for its commit. A failed write is logged.
    pub async fn append_audit(&self, event: AuditEvent) {
        let Ok(permit) = self.trail.room.acquire().await else {
            return;
        };
        permit.forget();
        if self.trail.push(event) {
            let store = self.clone();
            tokio::spawn(async move { store.flush_trail().await });
        }
    }

    /// Waits until every row queued so far on this instance is written,
    /// so a read of the trail that follows shows them all.
    pub async fn settle_audit(&self) {
        let _ = self.trail.room.acquire_many(QUEUED as u32).await;
    }

    async fn flush_trail(&self) {
        loop {
            tokio::time::sleep(LINGER).await;
            let rows = self.trail.take();
            if rows.is_empty() {
                return;
            }
            let count = rows.len();
            let written = self
                .write_either(Writes::Many, move |db| {
                    Box::pin(async move { audit::insert_many(db, &rows).await })
                })
                .await;
            if let Err(e) = written {
                tracing::error!(error = %e, rows = count, "audit rows were not written");
            }
            self.trail.room.add_permits(count);
        }
    }
}
