//! Poll times of pending device codes, written off the response's path
//! ([`Store::queue_poll`]), for a store no other instance shares.
//!
//! A pending poll's only write is its time, which decides whether the next
//! poll comes too fast. With one instance, that instance sees every poll:
//! the time is kept here until it is written, and [`Store::queued_poll`]
//! answers for it meanwhile, so the judgement is as exact as a committed
//! row's. One flusher task at a time lets times gather for [`LINGER`] and
//! writes them in one write job, on the writer's own connection. A crash loses only
//! poll times (a poll just before it may then not count as too fast).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{Store, Writes, device};

/// Codes whose poll time may wait at once; past that a poll takes the
/// statement path.
const QUEUED: usize = 4096;

/// Times taken into one write job.
const PER_JOB: usize = 512;

/// How long a flusher lets times gather before it takes them.
const LINGER: Duration = Duration::from_millis(10);

#[derive(Default)]
pub(super) struct PollTimes {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// The latest unwritten poll time of each device code hash.
    latest: HashMap<String, i64>,
    flushing: bool,
}

impl PollTimes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().expect("poll queue lock")
    }

    pub(super) fn is_idle(&self) -> bool {
        let queue = self.lock();
        queue.latest.is_empty() && !queue.flushing
    }
}

impl Store {
    /// True when other instances may write to this database (PostgreSQL),
    /// so what one instance holds in memory is not the whole story.
    pub fn is_shared(&self) -> bool {
        self.writer.is_none()
    }

    /// The unwritten poll time of a device code, if one waits.
    pub fn queued_poll(&self, code_hash: &str) -> Option<i64> {
        self.polls.lock().latest.get(code_hash).copied()
    }

    /// Queues a pending code's poll time; false (and nothing queued) when
    /// the store is shared or the queue is full, and the caller must write
    /// it itself.
    pub fn queue_poll(&self, code_hash: &str, at_ms: i64) -> bool {
        if self.is_shared() {
            return false;
        }
        let start = {
            let mut queue = self.polls.lock();
            let known = queue.latest.contains_key(code_hash);
            if !known && queue.latest.len() >= QUEUED {
                return false;
            }
            let latest = queue.latest.entry(code_hash.to_string()).or_insert(at_ms);
            *latest = (*latest).max(at_ms);
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            let store = self.clone();
            tokio::spawn(async move { store.flush_polls().await });
        }
        true
    }

    async fn flush_polls(&self) {
        loop {
            tokio::time::sleep(LINGER).await;
            let times: Vec<(String, i64)> = {
                let mut queue = self.polls.lock();
                if queue.latest.is_empty() {
                    queue.flushing = false;
                    return;
                }
                let times = queue.latest.iter().take(PER_JOB);
                times.map(|(hash, at)| (hash.clone(), *at)).collect()
            };
            let written = times.clone();
            let result = self
                .write_either(Writes::Many, move |db| {
                    Box::pin(async move { device::record_polls(db, &written).await })
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, codes = times.len(), "poll times were not written");
            }
            // A time that moved on while this one was written waits for the
            // next job.
            let mut queue = self.polls.lock();
            for (hash, at) in times {
                if queue.latest.get(&hash) == Some(&at) {
                    queue.latest.remove(&hash);
                }
            }
        }
    }
}
