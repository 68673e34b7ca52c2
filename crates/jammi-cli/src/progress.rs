//! Progress of long work (imports, index builds, compactions, embedding runs, artifact
//! transfers) on stderr: a bar when stderr is a terminal, plain periodic lines when it is
//! not (logs, CI), nothing with `--quiet`. Results stay alone on stdout.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use jammi_db::progress::{Progress, Unit};

static QUIET: AtomicBool = AtomicBool::new(false);

/// How often plain lines are printed, unless `JAMMI_PROGRESS_INTERVAL_MS` says otherwise.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// `--quiet`: report nothing, for the rest of the process.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// The reporter for one command.
pub fn reporter() -> Arc<dyn Progress> {
    if QUIET.load(Ordering::Relaxed) {
        return Arc::new(jammi_db::progress::NoProgress);
    }
    if std::io::stderr().is_terminal() {
        return Arc::new(Bar(ProgressBar::hidden()));
    }
    let interval = std::env::var("JAMMI_PROGRESS_INTERVAL_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis).unwrap_or(DEFAULT_INTERVAL);
    Arc::new(Lines { interval, phase: Mutex::new(None) })
}

/// A bar on a terminal.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, phase: &str, total: u64) {
        self.start_in(phase, total, Unit::Rows);
    }

    fn start_in(&self, phase: &str, total: u64, unit: Unit) {
        let bar = &self.0;
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.reset();
        bar.set_length(total);
        let template = match (total, unit) {
            (0, _) => "{spinner} {msg} {elapsed}",
            (_, Unit::Rows) => "{msg:>16} [{bar:40}] {human_pos}/{human_len} rows {per_sec} (ETA {eta})",
            (_, Unit::Bytes) => "{msg:>16} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} (ETA {eta})",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(phase.to_string());
    }

    fn set(&self, done: u64) {
        self.0.set_position(done);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Plain lines, for logs: every `interval` while a phase runs, and when it ends — only for
/// phases that ran longer than `interval`, so a quick command (or one that fails quickly)
/// prints its result or its one `error:` line and nothing else.
struct Lines {
    interval: Duration,
    phase: Mutex<Option<Phase>>,
}

struct Phase {
    name: String,
    total: u64,
    unit: Unit,
    done: u64,
    started: Instant,
    printed: Instant,
    /// A line was printed for this phase, so its end is printed too.
    shown: bool,
}

impl Phase {
    fn amount(&self, n: u64) -> String {
        match self.unit {
            Unit::Rows => format!("{} rows", HumanCount(n)),
            Unit::Bytes => HumanBytes(n).to_string(),
        }
    }

    fn rate(&self, n: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let per_sec = (n as f64 / secs) as u64;
        match self.unit {
            Unit::Rows => format!("{} rows/s", HumanCount(per_sec)),
            Unit::Bytes => format!("{}/s", HumanBytes(per_sec)),
        }
    }

    /// `phase: done / total (p%), rate, ETA t`.
    fn line(&self) -> String {
        if self.total == 0 {
            return format!("{}: {} so far, {}", self.name, self.amount(self.done), self.rate(self.done));
        }
        let fraction = self.done as f64 / self.total as f64;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if fraction > 0.0 { format!(", ETA {:.0} s", elapsed / fraction - elapsed) } else { String::new() };
        format!("{}: {} / {} ({:.0}%), {}{eta}", self.name, self.amount(self.done), self.amount(self.total), fraction * 100.0, self.rate(self.done))
    }
}

fn print(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

impl Progress for Lines {
    fn start(&self, phase: &str, total: u64) {
        self.start_in(phase, total, Unit::Rows);
    }

    fn start_in(&self, name: &str, total: u64, unit: Unit) {
        let now = Instant::now();
        let shown = self.interval.is_zero();
        let phase = Phase { name: name.to_string(), total, unit, done: 0, started: now, printed: now, shown };
        if shown {
            print(&if total > 0 { format!("{name}: {} to go", phase.amount(total)) } else { format!("{name}: started") });
        }
        *lock(&self.phase) = Some(phase);
    }

    fn set(&self, done: u64) {
        let mut guard = lock(&self.phase);
        let Some(phase) = guard.as_mut() else { return };
        phase.done = done;
        if phase.printed.elapsed() >= self.interval {
            phase.printed = Instant::now();
            phase.shown = true;
            print(&phase.line());
        }
    }

    fn finish(&self) {
        if let Some(phase) = lock(&self.phase).take().filter(|p| p.shown) {
            let secs = phase.started.elapsed().as_secs_f64();
            // Phases that only start and finish (no counts between) did their whole total.
            let done = if phase.done == 0 { phase.total } else { phase.done };
            if done == 0 {
                print(&format!("{}: done in {secs:.1} s", phase.name));
                return;
            }
            print(&format!("{}: done, {} in {secs:.1} s ({})", phase.name, phase.amount(done), phase.rate(done)));
        }
    }
}

/// The phase, even if a thread panicked while holding it (progress is best effort).
fn lock(phase: &Mutex<Option<Phase>>) -> MutexGuard<'_, Option<Phase>> {
    phase.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
