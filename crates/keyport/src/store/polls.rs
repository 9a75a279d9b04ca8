//! Poll times of pending device codes, kept in memory, for a store no other
//! instance shares ([`Store::remember_poll`]).
//!
//! A pending poll's only effect is its time, which decides whether the next
//! poll comes too fast, and only until the code's interval has passed. With
//! one instance, that instance sees every poll, so the time is kept here and
//! not written: a poll of a pending code commits nothing, and the judgement
//! is as exact as a committed row's. A restart forgets the times (a poll just
//! before it is then not judged too fast). A shared store (PostgreSQL)
//! writes each time in the poll's own statement, where every instance reads
//! it.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Store;

/// Codes whose poll time is held at once; past that a poll takes the
/// statement path, which writes its time. Seven eighths of 2^18, the most a
/// table of 2^18 slots holds before it doubles: 33 bytes a slot, about
/// 8.3 MiB when full.
const CAPACITY: usize = (1 << 18) / 8 * 7;

/// How often, at most, times past their interval are dropped.
const SWEEP_EVERY_MS: i64 = 1_000;

#[derive(Default)]
pub(super) struct PollTimes {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// The latest poll of each code, by [`key`].
    times: HashMap<u128, Remembered>,
    swept_ms: i64,
}

#[derive(Clone, Copy)]
struct Remembered {
    at_ms: i64,
    /// When the poll stops mattering: its time plus the code's interval.
    until_ms: i64,
}

/// A device code's key (`crypto::tokens::device_code_key`: a base64url
/// SHA-256 hash, perhaps after the code's time) as a compact key: the
/// hash's last 16 characters, 94 random bits.
fn key(code_hash: &str) -> Option<u128> {
    let start = code_hash.len().checked_sub(16)?;
    let bytes: [u8; 16] = code_hash.as_bytes().get(start..)?.try_into().ok()?;
    Some(u128::from_le_bytes(bytes))
}

impl PollTimes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Table {
    /// Holds a poll's time; false when the table is full of times that
    /// still matter.
    fn remember(&mut self, key: u128, at_ms: i64, until_ms: i64) -> bool {
        self.sweep(at_ms);
        if self.times.len() >= CAPACITY && !self.times.contains_key(&key) {
            return false;
        }
        let time = Remembered { at_ms, until_ms };
        self.times
            .entry(key)
            .and_modify(|held| {
                if at_ms >= held.at_ms {
                    *held = time;
                }
            })
            .or_insert(time);
        true
    }

    /// Drops the times that no longer judge a poll: once a second, or ten
    /// times a second while the table is full.
    fn sweep(&mut self, now_ms: i64) {
        let every = match self.times.len() >= CAPACITY {
            true => SWEEP_EVERY_MS / 10,
            false => SWEEP_EVERY_MS,
        };
        if now_ms < self.swept_ms + every {
            return;
        }
        self.swept_ms = now_ms;
        self.times.retain(|_, time| time.until_ms > now_ms);
        if self.times.capacity() > 4 * self.times.len().max(1024) {
            self.times.shrink_to_fit();
        }
    }
}

impl Store {
    /// True when other instances may write to this database (PostgreSQL),
    /// so what one instance holds in memory is not the whole story.
    pub fn is_shared(&self) -> bool {
        self.writer.is_none()
    }

    /// The time this instance last saw a device code polled, if it holds one.
    pub fn remembered_poll(&self, code_hash: &str) -> Option<i64> {
        let key = key(code_hash)?;
        self.polls.lock().times.get(&key).map(|time| time.at_ms)
    }

    /// Holds a pending code's poll time for `interval` seconds; false (and
    /// nothing held) when the store is shared or the table is full, and the
    /// caller must write the time itself.
    pub fn remember_poll(&self, code_hash: &str, at_ms: i64, interval: i64) -> bool {
        if self.is_shared() {
            return false;
        }
        let Some(key) = key(code_hash) else {
            return false;
        };
        let until_ms = at_ms.saturating_add(interval.saturating_mul(1000));
        self.polls.lock().remember(key, at_ms, until_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_the_last_sixteen_characters() {
        assert_eq!(key("short"), None);
        assert_ne!(key("xAAAAAAAAAAAAAAAA"), key("xAAAAAAAAAAAAAAAB"));
        assert_eq!(key("xAAAAAAAAAAAAAAAA"), key("yAAAAAAAAAAAAAAAA"));
        // Codes issued in the same millisecond share their key's prefix.
        assert_ne!(
            key("0018bcfe56800AAAAAAAAAAAAAAAA"),
            key("0018bcfe56800AAAAAAAAAAAAAAAB")
        );
    }

    #[test]
    fn a_time_never_moves_back() {
        let mut table = Table::default();
        assert!(table.remember(1, 10_000, 15_000));
        assert!(table.remember(1, 9_000, 14_000));
        assert_eq!(table.times[&1].at_ms, 10_000);
        assert!(table.remember(1, 11_000, 16_000));
        assert_eq!(table.times[&1].at_ms, 11_000);
    }

    #[test]
    fn a_sweep_drops_only_times_past_their_interval_once_a_second() {
        let mut table = Table::default();
        table.remember(1, 10_000, 15_000);
        table.remember(2, 14_500, 19_000);
        // The last sweep ran at 14.5 s: at 15.2 s the first time is over,
        // but no sweep is due.
        table.sweep(15_200);
        assert_eq!(table.times.len(), 2);
        table.sweep(15_500);
        assert_eq!(table.times.len(), 1);
        assert!(table.times.contains_key(&2));
    }

    #[test]
    fn a_full_table_refuses_new_codes_until_times_run_out() {
        let mut table = Table::default();
        for code in 0..CAPACITY as u128 {
            assert!(table.remember(code, 1_000, 6_000));
        }
        // Full of times that still matter: a new code is refused, a known
        // one moves on.
        assert!(!table.remember(u128::MAX, 1_500, 6_500));
        assert!(table.remember(7, 1_500, 6_500));
        // Once they are over, a sweep (due sooner while full) makes room.
        assert!(table.remember(u128::MAX, 6_100, 11_100));
        assert_eq!(table.times.len(), 2);
    }
}
