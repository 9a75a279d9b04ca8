//! `keyport serve`'s log: lines gather in memory and reach stderr in one
//! write, when [`BATCH_BYTES`] have gathered, at once for a warning or an
//! error, and otherwise within [`LINGER`]. A line per token grant (the
//! `audit` echo) had been a write(2) each on the request's thread: 14 % of
//! a client credentials grant. A SIGKILL loses the lines of the last
//! [`LINGER`] (the audit rows themselves are in the database).
//!
//! tracing-appender's `non_blocking` did the same from a thread and a
//! channel of its own, whose queue (128,000 lines, allocated at start) put
//! 4 MiB on the idle RSS.

use std::io::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Gathered bytes that are written at once.
const BATCH_BYTES: usize = 64 * 1024;

/// The longest a line waits for the next write.
pub const LINGER: Duration = Duration::from_millis(100);

/// The lines not yet written, and where they go.
pub struct Gathered {
    lines: Mutex<Vec<u8>>,
    /// Held from taking a batch to writing it, so batches go out in order.
    writing: Mutex<()>,
    out: fn(&[u8]),
}

pub static LOG: LazyLock<Gathered> = LazyLock::new(|| Gathered {
    lines: Mutex::new(Vec::new()),
    writing: Mutex::new(()),
    out: |lines| {
        // A log that cannot be written has nowhere to say so.
        let _ = std::io::stderr().lock().write_all(lines);
    },
});

impl Gathered {
    fn lines(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes every gathered line.
    pub fn flush(&self) {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let lines = std::mem::take(&mut *self.lines());
        if !lines.is_empty() {
            (self.out)(&lines);
        }
    }

    /// Writes every gathered line each [`LINGER`], for as long as the
    /// runtime runs.
    pub fn flush_every_linger(&'static self) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(LINGER);
            loop {
                ticks.tick().await;
                self.flush();
            }
        });
    }
}

/// One event's line: appended as it is formatted, and written out when it
/// ends if it must not wait.
pub struct Line {
    gathered: &'static Gathered,
    urgent: bool,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut lines = self.gathered.lines();
        lines.extend_from_slice(bytes);
        self.urgent |= lines.len() >= BATCH_BYTES;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.urgent {
            self.gathered.flush();
        }
    }
}

impl<'a> MakeWriter<'a> for &'static Gathered {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            gathered: self,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            gathered: self,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static WRITTEN: Mutex<usize> = Mutex::new(0);

    #[test]
    fn lines_wait_unless_urgent_or_many() {
        static GATHERED: LazyLock<Gathered> = LazyLock::new(|| Gathered {
            lines: Mutex::new(Vec::new()),
            writing: Mutex::new(()),
            out: |lines| *WRITTEN.lock().unwrap() += lines.len(),
        });
        let gathered: &'static Gathered = &GATHERED;
        let pending = || gathered.lines().len();
        let written = || *WRITTEN.lock().unwrap();
        let mut line = Line {
            gathered,
            urgent: false,
        };
        line.write_all(b"info\n").unwrap();
        drop(line);
        assert_eq!((pending(), written()), (5, 0), "an info line waits");
        let mut line = Line {
            gathered,
            urgent: true,
        };
        line.write_all(b"warning\n").unwrap();
        drop(line);
        assert_eq!(
            (pending(), written()),
            (0, 13),
            "a warning writes it and what waited"
        );
        let mut line = Line {
            gathered,
            urgent: false,
        };
        line.write_all(&vec![b'x'; BATCH_BYTES]).unwrap();
        drop(line);
        assert_eq!(
            (pending(), written()),
            (0, 13 + BATCH_BYTES),
            "a full batch is written"
        );
    }
}
