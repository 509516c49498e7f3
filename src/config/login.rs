//! The per-account login limit's settings (see `accounts::account_limit`): how many failures
//! across all addresses close an account to new addresses, for how long, and where its owner
//! resets the password.

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct LoginConfig {
    /// Failed logins of one account, from any addresses, after which addresses it has not
    /// logged in from are answered 429.
    #[arg(
        long,
        env = "LOGIN_ACCOUNT_FAILURES",
        default_value_t = 10,
        value_parser = clap::value_parser!(i64).range(1..),
        global = true
    )]
    pub login_account_failures: i64,

    /// The window, in minutes, in which those failures are counted.
    #[arg(
        long,
        env = "LOGIN_ACCOUNT_WINDOW_MINUTES",
        default_value_t = 15,
        value_parser = clap::value_parser!(i64).range(1..=10_080),
        global = true
    )]
    pub login_account_window_minutes: i64,

    /// Longest wait (seconds) an account over its limit imposes on new addresses; the wait
    /// doubles from one minute with each failure past the limit, up to this.
    #[arg(
        long,
        env = "LOGIN_ACCOUNT_MAX_DELAY_SECONDS",
        default_value_t = 900,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true
    )]
    pub login_account_max_delay_seconds: u64,

    /// The page where a customer resets a forgotten password, linked from the email that warns
    /// of failed logins. This service has no reset flow of its own: unset, the email says so
    /// and names no link.
    #[arg(long, env = "PASSWORD_RESET_URL", global = true)]
    pub password_reset_url: Option<String>,
}
