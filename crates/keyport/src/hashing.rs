//! Argon2id work off the async runtime: a few threads of its own (about one
//! per core), fed by a queue, under Linux's `SCHED_IDLE` policy: they run
//! when the runtime's workers leave a core idle, and a worker that wakes
//! takes the core back at once. A flood of password attempts then costs
//! polls, refreshes and userinfo little latency; sign-ins slow down instead.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting per hashing thread; past this a request is refused at once
/// rather than queued behind work that would outlast its deadline.
const QUEUE_PER_THREAD: usize = 64;

/// The hashing threads; dropping the pool lets them finish and exit.
pub struct HashingPool {
    jobs: mpsc::SyncSender<Job>,
}

#[derive(Debug, thiserror::Error)]
pub enum HashingFailed {
    #[error("too many passwords are waiting to be checked")]
    Busy,
    #[error("password hashing failed")]
    Failed,
}

impl HashingPool {
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads * QUEUE_PER_THREAD);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("keyport-argon2-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking job loses its answer, never the thread.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                })
                .expect("a hashing thread starts");
        }
        Self { jobs }
    }

    /// Runs `f` on a hashing thread and waits for its result. A job whose
    /// request has gone (timed out, disconnected) is skipped, and a full
    /// queue refuses at once.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashingFailed> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !reply.is_closed() {
                let _ = reply.send(f());
            }
        });
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => HashingFailed::Busy,
            mpsc::TrySendError::Disconnected(_) => HashingFailed::Failed,
        })?;
        answer.await.map_err(|_| HashingFailed::Failed)
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(e) = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
        tracing::warn!(error = ?e, "could not move a hashing thread to SCHED_IDLE");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_a_panic_costs_only_its_answer() {
        let pool = HashingPool::new(1);
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
        assert!(pool.run(|| -> i32 { panic!("boom") }).await.is_err());
        assert_eq!(pool.run(|| "still here").await.unwrap(), "still here");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_abandoned_jobs_are_skipped() {
        use futures_util::FutureExt;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;
        let pool = Arc::new(HashingPool::new(1));
        // One job holds the only thread until told to go on.
        let (started, has_started) = std::sync::mpsc::channel::<()>();
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let p = pool.clone();
        let blocker = tokio::spawn(async move {
            p.run(move || {
                started.send(()).unwrap();
                held.recv().ok()
            })
            .await
        });
        tokio::task::spawn_blocking(move || has_started.recv().unwrap())
            .await
            .unwrap();
        // The queue fills with jobs whose requests are gone at once (each
        // future is polled once, which queues the job, then dropped).
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..QUEUE_PER_THREAD {
            let ran = ran.clone();
            let job = pool.run(move || ran.fetch_add(1, Ordering::SeqCst));
            assert!(job.now_or_never().is_none(), "queued, not answered");
        }
        assert!(matches!(
            pool.run(|| ()).now_or_never(),
            Some(Err(HashingFailed::Busy))
        ));
        hold.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        // The thread works through the abandoned jobs without running them.
        let mut answer = pool.run(|| 7).await;
        for _ in 0..500 {
            if !matches!(answer, Err(HashingFailed::Busy)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            answer = pool.run(|| 7).await;
        }
        assert_eq!(answer.unwrap(), 7);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_threads_run_only_on_idle_cpu() {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        let pool = HashingPool::new(1);
        let policy = pool
            .run(|| thread_priority::unix::thread_schedule_policy().unwrap())
            .await
            .unwrap();
        assert_eq!(
            policy,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle)
        );
        assert_ne!(
            thread_priority::unix::thread_schedule_policy().unwrap(),
            policy
        );
    }
}
