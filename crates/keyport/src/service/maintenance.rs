//! Keyport's upkeep: key reloads and rotations when due, and the hourly
//! pruning of what no rule needs any more.

use std::time::{Duration, Instant};

use super::Keyport;
use crate::store;
use crate::store::retention::{Cutoffs, Prune};

impl Keyport {
    /// Hourly upkeep: forgets the sealed leeway replies (of rotations and
    /// of device-code redemptions) past the leeway, then prunes what no rule
    /// needs any more ([`Prune`]), one bounded batch per write job so the
    /// writer is never held for long. Returns what it removed.
    pub async fn housekeeping(&self) -> Result<Housekeeping, store::Error> {
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let leeway_ms = self.config.tokens.refresh_leeway * 1000;
        self.store
            .write(move |c| {
                Box::pin(async move {
                    store::device::forget_sealed_tokens(&mut *c, now_ms - leeway_ms).await?;
                    store::sessions::forget_sealed_successors(c, now_ms - leeway_ms).await?;
                    Ok(())
                })
            })
            .await?;
        const DAY: i64 = 86_400;
        let (retention, tokens) = (&self.config.retention, &self.config.tokens);
        let kept = retention.ended_sessions_days * DAY;
        let at = Cutoffs {
            now,
            revoked_before: now - kept,
            idle_before: now - tokens.refresh_token_ttl - kept,
            created_before: now - tokens.session_max_lifetime - kept,
            failures_before: now - self.config.limits.lockout_seconds,
            audit_before_ms: now_ms - retention.audit_days * DAY * 1000,
        };
        let limit = retention.batch_size.max(1);
        let mut report = Housekeeping::default();
        for what in Prune::ALL {
            let mut total = 0;
            loop {
                let (n, held) = self
                    .store
                    .write_one(move |c| {
                        Box::pin(async move {
                            let started = Instant::now();
                            let n = store::retention::prune(c, what, at, limit).await?;
                            Ok((n, started.elapsed()))
                        })
                    })
                    .await?;
                report.batches += 1;
                report.longest_batch = report.longest_batch.max(held);
                total += n;
                if n < limit as u64 {
                    break;
                }
                // Let the requests queued meanwhile have the writer first.
                tokio::task::yield_now().await;
            }
            report.removed.push((what, total));
        }
        if report.removed.iter().any(|(_, n)| *n > 0) {
            let summary: Vec<String> = report
                .removed
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(what, n)| format!("{}={n}", what.name()))
                .collect();
            tracing::info!(pruned = %summary.join(" "), "housekeeping");
        }
        Ok(report)
    }

    /// Background upkeep: reload keys rotated elsewhere (every 2 s), rotate
    /// keys when due (every minute), prune storage (hourly).
    pub fn spawn_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let keyport = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                n += 1;
                crate::telemetry::upkeep();
                if let Err(e) = keyport.reload_keys().await {
                    tracing::warn!(error = %e, "signing key reload failed");
                }
                if n.is_multiple_of(30)
                    && let Err(e) = keyport.rotate_keys_if_due().await
                {
                    tracing::warn!(error = %e, "signing key rotation failed");
                }
                if n.is_multiple_of(1800)
                    && let Err(e) = keyport.housekeeping().await
                {
                    tracing::warn!(error = %e, "purging expired codes and leeway replies failed");
                }
            }
        })
    }
}

/// What one housekeeping run did.
#[derive(Debug, Default, Clone)]
pub struct Housekeeping {
    /// Rows removed, by kind.
    pub removed: Vec<(Prune, u64)>,
    /// Batches run (each one write job).
    pub batches: u64,
    /// The longest a batch's statement ran inside the write transaction.
    pub longest_batch: Duration,
}
