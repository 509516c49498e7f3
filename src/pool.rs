//! Small fixed thread pools for blocking work, in place of tokio's blocking pool (hundreds of
//! threads): password hashing (its pool lives with the hashing, in `accounts::password`) gets one thread per core (each argon2 run takes 19 MiB and a
//! whole core, so more at once only adds latency), rendering one per core, Git one thread (libgit2 work is
//! serialised by the repository lock anyway). Few threads mean few malloc arenas: on the
//! blocking pool a signup burst left gigabytes of per-thread arenas behind. Jobs queue in
//! arrival order.

use std::sync::LazyLock;
use std::time::Duration;

use flume::{RecvTimeoutError, Sender};

type Job = Box<dyn FnOnce() + Send>;

pub struct Pool {
    jobs: Sender<Job>,
}

/// How long a pool thread waits for work before running its idle hook.
pub const IDLE_AFTER: Duration = Duration::from_secs(1);

/// Caps glibc's malloc arenas at two. glibc gives busy threads arenas of their own (up to eight
/// a core), each keeping freed memory for itself; the server's threads mostly take turns, and
/// fewer arenas keep its resident memory down. Call at start-up, before threads start.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands memory that malloc holds free back to the OS (glibc keeps it in its arenas).
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CPU-bound rendering: one thread per core.
pub static COMPUTE: LazyLock<Pool> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Pool::new("compute", cores)
});

/// Local Git work (commits, reads, ancestry checks): one thread.
pub static GIT: LazyLock<Pool> = LazyLock::new(|| Pool::new("git", 1));

/// Git work against the remote (fetch, push, ls-remote): one thread of its own, so that a slow
/// remote holds up only other network work, never commits and reads.
pub static NET: LazyLock<Pool> = LazyLock::new(|| Pool::new("git-net", 1));

impl Pool {
    pub fn new(name: &str, threads: usize) -> Pool {
        Self::with_idle(name, threads, None)
    }

    /// A pool whose threads run `on_idle` once after [`IDLE_AFTER`] without work. The queue is
    /// a multi-consumer channel (flume, already used by sqlx): each idle thread waits on its own,
    /// none holds a lock while waiting.
    pub fn with_idle(name: &str, threads: usize, on_idle: Option<fn()>) -> Pool {
        let (tx, rx) = flume::unbounded::<Job>();
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    let mut idle_hook = None;
                    loop {
                        let job = match idle_hook {
                            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                            Some(_) => rx.recv_timeout(IDLE_AFTER),
                        };
                        match job {
                            // A panicking job drops its result sender (the caller sees an
                            // error); the thread lives on for the next job.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                                idle_hook = on_idle;
                            }
                            Err(RecvTimeoutError::Timeout) => {
                                if let Some(hook) = idle_hook.take() {
                                    hook();
                                }
                            }
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                })
                .expect("spawning a pool thread");
        }
        Pool { jobs: tx }
    }

    /// Runs `work` on this pool and awaits its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("thread pool stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("pool job panicked or was lost"))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_jobs_and_returns_their_results() {
        let handles: Vec<_> = (0..20u64)
            .map(|i| tokio::spawn(super::COMPUTE.run(move || i * 2)))
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap().unwrap());
        }
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_pool_keeps_working() {
        let failed = super::GIT.run(|| -> u8 { panic!("boom") }).await;
        assert!(failed.is_err());
        assert_eq!(super::GIT.run(|| 7).await.unwrap(), 7);
    }

    static IDLE_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn count_idle() {
        IDLE_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    #[tokio::test]
    async fn each_thread_runs_its_idle_hook_once_after_work() {
        let idle = || IDLE_RUNS.load(std::sync::atomic::Ordering::SeqCst);
        let pool = super::Pool::with_idle("idle-test", 2, Some(count_idle));
        tokio::time::sleep(super::IDLE_AFTER * 2).await;
        assert_eq!(
            idle(),
            0,
            "threads that never worked have nothing to release"
        );
        // Two slow jobs at once: both threads work, then both go idle.
        let nap = || std::thread::sleep(std::time::Duration::from_millis(300));
        let (a, b) = tokio::join!(pool.run(nap), pool.run(nap));
        a.unwrap();
        b.unwrap();
        assert_eq!(idle(), 0, "not while busy");
        tokio::time::sleep(super::IDLE_AFTER * 3).await;
        assert_eq!(idle(), 2, "once per thread that worked");
        tokio::time::sleep(super::IDLE_AFTER * 2).await;
        assert_eq!(idle(), 2, "and not again until it works again");
    }
}
