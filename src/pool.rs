//! Small fixed thread pools for blocking work, in place of tokio's blocking pool (hundreds of
//! threads): password hashing gets one thread per core (each argon2 run takes 19 MiB and a
//! whole core, so more at once only adds latency), rendering one per core, Git one thread (libgit2 work is
//! serialised by the repository lock anyway). Few threads mean few malloc arenas: on the
//! blocking pool a signup burst left gigabytes of per-thread arenas behind. Jobs queue in
//! arrival order.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, LazyLock, Mutex};

type Job = Box<dyn FnOnce() + Send>;

pub struct Pool {
    jobs: Mutex<Sender<Job>>,
}

/// Password hashing: one thread per core.
pub static HASHING: LazyLock<Pool> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Pool::new("password-hash", cores)
});

/// CPU-bound rendering: one thread per core.
pub static COMPUTE: LazyLock<Pool> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Pool::new("compute", cores)
});

/// Git work (commits, pushes, ancestry checks): one thread.
pub static GIT: LazyLock<Pool> = LazyLock::new(|| Pool::new("git", 1));

impl Pool {
    fn new(name: &str, threads: usize) -> Pool {
        let (tx, rx) = channel::<Job>();
        let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || loop {
                    // The lock is held only while taking a job, not while running it.
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A panicking job drops its result sender (the caller sees an error);
                        // the thread lives on for the next job.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                })
                .expect("spawning a pool thread");
        }
        Pool {
            jobs: Mutex::new(tx),
        }
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
            .lock()
            .map_err(|_| anyhow::anyhow!("thread pool poisoned"))?
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
            .map(|i| tokio::spawn(super::HASHING.run(move || i * 2)))
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
}
