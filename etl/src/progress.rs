//! Progress reporting: a live bar on a terminal, structured logs otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Counts rows into a [`Progress`] bar from another task.
#[derive(Debug, Clone)]
pub struct RowCounter(ProgressBar);

impl RowCounter {
    /// `n` more rows went through.
    pub fn rows(&self, n: u64) {
        self.0.inc(n);
    }
}

/// Reports rows as they stream. Every finished step is also logged with
/// `tracing`, so a nightly job's log tells the same story as the bar.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    step_started: Instant,
}

impl Progress {
    /// A bar on stderr when it is a terminal; hidden otherwise.
    pub fn auto() -> Self {
        if std::io::stderr().is_terminal() {
            Self::with_bar(ProgressBar::new_spinner())
        } else {
            Self::hidden()
        }
    }

    /// No bar (tests, non-terminals); logs only.
    pub fn hidden() -> Self {
        Self::with_bar(ProgressBar::hidden())
    }

    fn with_bar(bar: ProgressBar) -> Self {
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg:<32} {human_pos:>12} rows  {per_sec}")
                .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            bar,
            step_started: Instant::now(),
        }
    }

    /// A new step (a table being read or written) begins.
    pub fn step(&mut self, name: &str) {
        self.bar.set_message(name.to_string());
        self.bar.set_position(0);
        self.bar.reset_eta();
        self.step_started = Instant::now();
    }

    /// `n` more rows went through.
    pub fn rows(&self, n: u64) {
        self.bar.inc(n);
    }

    /// A handle that counts rows from other tasks.
    pub fn counter(&self) -> RowCounter {
        RowCounter(self.bar.clone())
    }

    /// The step ended with `rows` rows.
    pub fn done(&self, what: &str, name: &str, rows: u64) {
        let secs = self.step_started.elapsed().as_secs_f64();
        tracing::info!(
            step = what,
            table = name,
            rows,
            secs,
            rows_per_sec = (rows as f64 / secs.max(1e-9)) as u64,
            "step done"
        );
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
