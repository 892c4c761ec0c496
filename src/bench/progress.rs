//! The progress bar of a long run, drawn on stderr only when it is a terminal.

use std::io::{self, IsTerminal};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress bar appears only once a run has lasted this long: a short run needs none.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// The progress bar: drawn on stderr only when it is a terminal, not switched off, and the run
/// has lasted [`PROGRESS_AFTER`].
pub struct Progress {
    enabled: bool,
    total: u64,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(allowed: bool, total: u64) -> Progress {
        Progress {
            enabled: allowed && io::stderr().is_terminal(),
            total,
            bar: None,
        }
    }

    pub fn update(&mut self, acked: u64, elapsed: Duration) {
        if self.bar.is_none() && self.enabled && elapsed >= PROGRESS_AFTER {
            let style = ProgressStyle::with_template(
                "{bar:40} {human_pos}/{human_len} records acked ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::with_draw_target(Some(self.total), ProgressDrawTarget::stderr())
                .with_style(style);
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_position(acked);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A run that fails leaves no half-drawn bar above its error message.
impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
