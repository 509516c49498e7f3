//! `billing`: the binary. Parses the command line and hands over to `cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    billing::pool::limit_malloc_arenas();
    let cli = billing::cli::Cli::parse();
    billing::cli::init_tracing(cli.command.default_log_filter());
    let network_wait = std::time::Duration::from_secs(cli.config.gitops_network_timeout_seconds);
    if let Err(e) = billing::gitops::limit_network_waits(network_wait) {
        eprintln!("error: cannot configure libgit2: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(billing::cli::run(cli));
    // Tasks still running (a worker past the shutdown deadline, a DNS lookup) must not hold
    // the exit back: dropping the runtime would wait for its blocking threads.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
