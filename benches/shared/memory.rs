//! Where a process's resident memory is at its peak: a thread samples `/proc/<pid>/smaps_rollup`
//! every 50 ms and, each time the total grows by a megabyte, reads the full `smaps` and sums it
//! by mapping (the heap and anonymous mappings, each mapped file). `VmHWM` says how high it went;
//! this says what it was made of then, and in which phase of the run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The resident memory at the highest sample: total, and kB by mapping kind.
#[derive(Clone, Default)]
pub struct Peak {
    pub rss_kb: u64,
    pub phase: &'static str,
    pub by_mapping: BTreeMap<String, u64>,
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    peak: Arc<Mutex<Peak>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Samples `pid` until dropped or [`Sampler::finish`]ed; `phases` name the values
    /// [`Sampler::phase`] sets.
    pub fn start(pid: u32, phases: &'static [&'static str]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(Mutex::new(Peak::default()));
        let (s, p, k) = (stop.clone(), phase.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = rollup_rss_kb(pid) {
                    let last = k.lock().unwrap().rss_kb;
                    if rss > last + 1024 || (last == 0 && rss > 0) {
                        let by_mapping = smaps_by_mapping(pid);
                        let total: u64 = by_mapping.values().sum();
                        *k.lock().unwrap() = Peak {
                            rss_kb: total.max(rss),
                            phase: phases[p.load(Ordering::Relaxed).min(phases.len() - 1)],
                            by_mapping,
                        };
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Sampler {
            stop,
            phase,
            peak,
            thread: Some(thread),
        }
    }

    pub fn phase(&self, index: usize) {
        self.phase.store(index, Ordering::Relaxed);
    }

    pub fn finish(mut self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.lock().unwrap().clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn rollup_rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    field_kb(text.lines().find(|l| l.starts_with("Rss:"))?)
}

fn field_kb(line: &str) -> Option<u64> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident kB by mapping: a file's name (packs and indexes grouped), `[heap]`, `[stack]`,
/// or `anonymous` for the rest (thread stacks, large allocations, malloc's other arenas).
fn smaps_by_mapping(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return out;
    };
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: address range, perms, offset, dev, inode, [path].
            let path = words.nth(4).unwrap_or("");
            current = kind(path);
        } else if first == "Rss:" {
            *out.entry(current.clone()).or_insert(0) += field_kb(line).unwrap_or(0);
        }
    }
    out.retain(|_, kb| *kb >= 256);
    out
}

fn kind(path: &str) -> String {
    if path.is_empty() {
        return "anonymous".into();
    }
    if path.ends_with(".pack") || path.ends_with(".idx") || path.ends_with(".rev") {
        return format!("git {}", path.rsplit('.').next().unwrap_or(""));
    }
    if path.ends_with("/billing") {
        return "the billing binary".into();
    }
    if path.starts_with('[') {
        return path.into();
    }
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// `kb` as MB with one decimal.
pub fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}
