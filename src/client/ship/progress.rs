//! What a person watching `logmill ship tx` sees: one line per file being shipped, with its
//! bytes and rate (indicatif), drawn on stderr only when stderr is a terminal; messages printed
//! above the bars; and the summary line at the end, which is always printed.

use std::collections::HashMap;
use std::io::{self, IsTerminal as _};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars, by stored name; nothing at all when not on a terminal.
pub struct Progress {
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
}

impl Progress {
    pub fn new(allowed: bool) -> Progress {
        let multi = (allowed && io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress {
            multi,
            bars: HashMap::new(),
        }
    }

    /// A message for the person: above the bars on a terminal, a plain stderr line otherwise.
    pub fn say(&self, line: &str) {
        match &self.multi {
            Some(multi) if multi.println(line).is_ok() => {}
            _ => eprintln!("{line}"),
        }
    }

    /// A file started shipping at `position` of `size` bytes.
    pub fn start(&mut self, stored: &str, position: u64, size: u64) {
        let Some(multi) = &self.multi else { return };
        let style = ProgressStyle::with_template(
            "{prefix:30!} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} {wide_bar}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = multi.add(
            ProgressBar::new(size)
                .with_style(style)
                .with_prefix(stored.to_owned()),
        );
        bar.set_position(position);
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bars.insert(stored.to_owned(), bar);
    }

    pub fn update(&self, stored: &str, position: u64, size: u64) {
        if let Some(bar) = self.bars.get(stored) {
            bar.set_length(size.max(position));
            bar.set_position(position);
        }
    }

    pub fn end(&mut self, stored: &str) {
        if let (Some(multi), Some(bar)) = (&self.multi, self.bars.remove(stored)) {
            bar.finish_and_clear();
            multi.remove(&bar);
        }
    }
}

/// No half-drawn bars above a final message.
impl Drop for Progress {
    fn drop(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
        if let Some(multi) = &self.multi
            && let Err(e) = multi.clear()
        {
            eprintln!("cannot clear the progress bars: {e}");
        }
    }
}
