//! Progress of long CLI work (bulk re-render, rollouts, layout migration): a bar with counts,
//! rate and ETA on a terminal (indicatif), plain log lines on stderr otherwise, so a CI log or
//! a pipe gets a readable record instead of control characters.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain log line is written when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    what: String,
    total: u64,
    done: u64,
    started: Instant,
    /// Some on a terminal.
    bar: Option<ProgressBar>,
    /// When the last plain line was written, and the count it gave.
    last_line: Option<(Instant, u64)>,
}

impl Progress {
    /// Progress of `total` steps of `what` ("tenants re-rendered"), drawn on stderr.
    pub fn new(what: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} {msg} ({per_sec}, ETA {eta})",
                )
                .expect("a valid progress template"),
            );
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            what: what.to_string(),
            total,
            done: 0,
            started: Instant::now(),
            bar,
            last_line: None,
        }
    }

    /// `done` of the steps are finished.
    pub fn set(&mut self, done: u64) {
        self.done = done.min(self.total);
        match &self.bar {
            Some(bar) => bar.set_position(self.done),
            None => {
                let due = self
                    .last_line
                    .is_none_or(|(at, _)| at.elapsed() >= LOG_EVERY);
                if due {
                    self.log_line();
                }
            }
        }
    }

    /// One more step finished.
    pub fn inc(&mut self) {
        self.set(self.done + 1);
    }

    /// Ends the bar (or writes the last line) with the final count.
    pub fn finish(mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish(),
            // Unless the last line already gave the final count.
            None if self.last_line.map(|(_, done)| done) != Some(self.done) => self.log_line(),
            None => {}
        }
    }

    fn log_line(&mut self) {
        self.last_line = Some((Instant::now(), self.done));
        eprintln!("{}", self.line());
    }

    /// `re-rendered: 120/1000 (12%), 40.0/s, ETA 22s`.
    fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            self.done as f64 / elapsed
        } else {
            0.0
        };
        let percent = (self.done * 100).checked_div(self.total).unwrap_or(100);
        let eta = if self.done >= self.total {
            "done".to_string()
        } else if rate > 0.0 {
            format!("ETA {:.0}s", (self.total - self.done) as f64 / rate)
        } else {
            "ETA unknown".to_string()
        };
        format!(
            "{}: {}/{} ({percent}%), {rate:.1}/s, {eta}",
            self.what, self.done, self.total
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn plain_lines_give_counts_percent_rate_and_eta() {
        let mut p = Progress {
            bar: None,
            ..Progress::new("re-rendered", 4)
        };
        p.done = 1;
        let line = p.line();
        assert!(line.starts_with("re-rendered: 1/4 (25%), "), "{line}");
        assert!(line.contains("/s, ETA "), "{line}");
        p.done = 4;
        assert!(p.line().ends_with(", done"), "{}", p.line());
        let empty = Progress {
            bar: None,
            ..Progress::new("nothing", 0)
        };
        assert!(empty.line().starts_with("nothing: 0/0 (100%)"));
    }
}
