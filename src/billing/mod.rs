//! Billing after signup: the subscription state machine, the effects of its changes (a new
//! license, a re-render through the outbox, history and audit), the Stripe door and the clock's
//! (the lifecycle scheduler).

pub mod change;
pub mod checkout;
mod error;
mod handles;
pub mod lifecycle;
mod reminders;
pub mod stripe;
pub mod view;

/// The subscription's state machine lives in the model, where `db` and `render` see it too.
pub use crate::model::subscription;
pub use change::{apply, Change, Outcome, Source};
pub use error::BillingError;
pub use handles::{BillingHandles, BillingSettings};
pub use subscription::{Event, SubscriptionStatus};
