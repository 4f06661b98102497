//! Import progress: an indicatif bar with rate and ETA on a terminal, plain lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress on stderr of an import of `total` rows.
#[derive(Debug)]
pub enum Progress {
    Bar(ProgressBar),
    Lines {
        total: u64,
        start: Instant,
        last: Instant,
        every: Duration,
    },
}

impl Progress {
    /// A bar when stderr is a terminal, else a line every `every`.
    pub fn new(total: u64, every: Duration) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{bar:40} {pos}/{len} rows  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            Progress::Bar(bar)
        } else {
            let now = Instant::now();
            Progress::Lines {
                total,
                start: now,
                last: now,
                every,
            }
        }
    }

    /// `done` rows read.
    pub fn set(&mut self, done: u64) {
        match self {
            Progress::Bar(b) => b.set_position(done),
            Progress::Lines {
                total,
                start,
                last,
                every,
            } => {
                if last.elapsed() >= *every || done == *total {
                    *last = Instant::now();
                    let secs = start.elapsed().as_secs_f64().max(1e-3);
                    let rate = done as f64 / secs;
                    let eta = if rate > 0.0 {
                        (*total).saturating_sub(done) as f64 / rate
                    } else {
                        0.0
                    };
                    let _ = writeln!(
                        std::io::stderr(),
                        "progress: {done}/{total} rows, {rate:.0} rows/s, ETA {eta:.0}s"
                    );
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish();
        }
    }
}
