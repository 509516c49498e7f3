//! Customer accounts: signup, login, sessions and the views returned to clients.

pub mod account_limit;
pub mod deletion;
pub mod domain;
mod error;
mod handles;
pub mod login;
pub mod password;
pub mod session;
pub mod signup;
pub mod text;
pub mod throttle;
pub mod view;

pub use error::AccountError;
pub use handles::{AccountSettings, AccountsHandles};

/// Where a request came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}
